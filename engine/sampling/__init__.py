"""Uncertainty scores, per-item reductions, diversity and samplers (pure numpy).

Higher scores always mean "label me first". See the submodules for the rules:
``scores`` (probabilities -> region scores), ``reductions`` (regions -> item),
``policies`` (task defaults for detection, masks, entity spans), ``diversity``
(k-center greedy) and ``samplers`` (scores -> indices to label, composable).
"""

from engine.sampling.diversity import k_center_greedy
from engine.sampling.policies import (
    detection_item_scores,
    detection_region_scores,
    mask_item_scores,
    sentence_scores,
)
from engine.sampling.reductions import (
    REDUCTIONS,
    Reduction,
    get_reduction,
    make_groups,
    reduce_groups,
)
from engine.sampling.samplers import (
    SAMPLERS,
    Calibration,
    Diverse,
    PowerSampling,
    Random,
    Sampler,
    TopK,
    build_sampler,
    calibration_indices,
    power_sample,
    rank,
    top_k,
)
from engine.sampling.scores import (
    SCORES,
    STOCHASTIC_SCORES,
    bald,
    binary_entropy,
    check_probs,
    entropy,
    get_score,
    least_confidence,
    margin,
    normalize_probs,
    score,
    variation_ratio,
)

__all__ = [
    "REDUCTIONS",
    "SAMPLERS",
    "SCORES",
    "STOCHASTIC_SCORES",
    "Calibration",
    "Diverse",
    "PowerSampling",
    "Random",
    "Reduction",
    "Sampler",
    "TopK",
    "bald",
    "binary_entropy",
    "build_sampler",
    "calibration_indices",
    "check_probs",
    "detection_item_scores",
    "detection_region_scores",
    "entropy",
    "get_reduction",
    "get_score",
    "k_center_greedy",
    "least_confidence",
    "make_groups",
    "margin",
    "mask_item_scores",
    "normalize_probs",
    "power_sample",
    "rank",
    "reduce_groups",
    "score",
    "sentence_scores",
    "top_k",
    "variation_ratio",
]
