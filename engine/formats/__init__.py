"""Wire formats: Label Studio (configs, results, brush RLE) and dataset exports.

Import the submodules directly (``engine.formats.labelstudio``,
``engine.formats.brush_rle``, ``engine.formats.export``); this package imports
nothing at import time.
"""
