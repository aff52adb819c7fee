"""Whole-item image classification (Label Studio ``<Choices>``): the ``classifier`` family.

``classifier.ImageClassifier`` is the adapter (one region-less suggestion per
image, the full softmax row, an embedding from the same forward);
``networks`` builds the architectures (``efficientnet_lite0``, ``timm:<name>``,
``torchvision:<name>``) from a state dict; ``build.build_classifier`` makes one
from a model spec. Nothing is imported here: torch loads on first use.
"""
