"""Whether the labels are right: agreement, gold, consensus and the quality report.

``agreement`` (kappa, alpha) and ``matching`` (regions and spans across people)
are pure; ``consensus`` is the overlap / gold / resolution policy over the store;
``report`` gathers every figure of ``GET /reports/quality``.
"""
