"""Pre-encoded SAM image embeddings: the ``labelengine embed`` job and what it shares
with the server (the disk directory, how items are keyed, the ranked backlog).

Sits at the pre-label layer: imports ``engine.models``, ``engine.store``,
``engine.jobs`` and ``engine.prelabel.runtime`` / ``stages``; ``engine.serving``
imports it. Nothing heavy happens at import time.
"""
