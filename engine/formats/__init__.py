"""Wire formats: Label Studio (configs, results, brush RLE) and dataset exports.

Import the submodules directly (``engine.labelstudio.results``,
``engine.labelstudio.brush_rle``, ``engine.formats.export``); this package imports
nothing at import time.
"""
