"""Resumable pre-label jobs on Ray Data (see ``engine.prelabel.job``).

A detector pre-labels image items (optionally chained with a segmenter that
turns its boxes into masks: ``chain``); a tagger pre-labels text items
(``text``); ``plan`` decides which from the model family.

Entry points: ``engine.prelabel.job.create_prelabel_job`` / ``run_prelabel_job``,
``engine.prelabel.progress.run_with_progress`` (CLI), ``python -m engine.prelabel``.
Nothing is imported here, so importing the package does not import Ray or torch.
"""
