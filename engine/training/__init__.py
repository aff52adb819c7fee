"""Training: fine-tune models from public data or from the store's reviewed labels.

``engine.training.ner`` fine-tunes a transformers token classifier (the bundled
MiniLM encoder by default) on CoNLL-2003 (``engine.training.conll``) or on the
spans editors accepted or corrected, and saves a new versioned model directory
under the models dir. Nothing is imported or trained at import time.
"""
