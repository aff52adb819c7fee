"""Resumable pre-label jobs on Ray Data (see ``engine.prelabel.job``).

Entry points: ``engine.prelabel.job.create_prelabel_job`` / ``run_prelabel_job``,
``engine.prelabel.progress.run_with_progress`` (CLI), ``python -m engine.prelabel``.
Nothing is imported here, so importing the package does not import Ray or torch.
"""
