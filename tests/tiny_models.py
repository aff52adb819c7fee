"""Tiny real-architecture models with random weights, shared by the tests that need one.

Each builder makes the engine's own model class around a real architecture
(SAM / LiteMedSAM, YOLO11n, BERT) small enough to build in a fraction of a second
on a CPU, so the tests exercise the real code paths without any weights file.
Spec builders give the same models as model specs (``configs/models/*.yaml``
entries), for tests that go through a config folder, a job or the server.
"""

from __future__ import annotations

import functools
import string
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from engine.types import Box, Item, Prediction

if TYPE_CHECKING:
    from engine.models.classify.classifier import ImageClassifier
    from engine.models.sam.segmenter import SamSegmenter
    from engine.models.yolo import YoloDetector


def write_model_spec(config_dir: Path, spec: dict[str, Any]) -> Path:
    """Write ``spec`` as ``<config_dir>/models/<name>.yaml``; returns the file."""
    import yaml

    path = config_dir / "models" / f"{spec['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


# -- SAM ---------------------------------------------------------------------------------


def tiny_sam(
    variant: str = "litemedsam", *, iou_bias: float | None = None, **options: Any
) -> SamSegmenter:
    """A ``SamSegmenter`` on a tiny random ``variant`` (``litemedsam`` or ``vit_b``), CPU.

    ``iou_bias`` sets the IoU head's output bias: random weights predict an IoU near
    0, so every mask would score 0 (under any display threshold) without it.
    ``options`` go to ``SamSegmenter`` (``name``, ``seed``, ``version``, ``batch_size``...).
    """
    import torch

    from engine.models.sam.segmenter import SamSegmenter

    sam = SamSegmenter(variant, tiny=True, device="cpu", **options)
    if iou_bias is not None:
        with torch.no_grad():
            sam.sam.mask_decoder.iou_prediction_head.layers[-1].bias.fill_(iou_bias)
    return sam


def tiny_sam_spec(name: str = "tinysam", variant: str = "litemedsam") -> dict[str, Any]:
    """The model spec of a tiny random SAM (what ``build_model`` turns into ``tiny_sam``)."""
    return {"name": name, "family": "sam", "params": {"variant": variant, "tiny": True}}


# -- YOLO --------------------------------------------------------------------------------

DETECTOR_CLASSES = ("cat", "dog", "car", "tree")


def tiny_yolo_spec(name: str = "tiny", **params: Any) -> dict[str, Any]:
    """The model spec of a random YOLO11n (``arch_yaml``, no weights) with ``params``."""
    return {"name": name, "family": "yolo", "params": {"arch_yaml": "yolo11n.yaml", **params}}


def tiny_yolo(arch_yaml: str = "yolo11n.yaml", **options: Any) -> YoloDetector:
    """A ``YoloDetector`` on a randomly initialised ``arch_yaml`` network, CPU."""
    from engine.models.yolo import YoloDetector

    return YoloDetector(arch_yaml=arch_yaml, device="cpu", **options)


@functools.cache
def cat_tree_car_detector(name: str, version: str | None = None) -> YoloDetector:
    """A tiny random YOLO11n over ``DETECTOR_CLASSES`` (64 px) that finds things.

    Random weights score every class near 0; each level of the head gets its own
    winning class (cat, tree, car), so the detector finds mapped and unmapped
    classes. Built once per ``(name, version)``.
    """
    import torch

    detector = tiny_yolo(
        num_classes=len(DETECTOR_CLASSES),
        class_names=DETECTOR_CLASSES,
        imgsz_px=64,
        max_det=20,
        name=name,
        version=version,
    )
    net: Any = detector._net
    head = net.model[-1]
    for level, winner in enumerate((0, 3, 2)):
        bias = torch.full((len(DETECTOR_CLASSES),), 1.0)
        bias[winner] = 2.0
        with torch.no_grad():
            head.cv3[level][-1].bias.copy_(bias)
    return detector


def random_images(rng: np.random.Generator, sizes_hw: tuple[tuple[int, int], ...]) -> list[Any]:
    """Random RGB uint8 images of the given ``(height, width)`` sizes."""
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in sizes_hw]


def image_items(count: int) -> list[Item]:
    """``count`` image items ``img-0``, ``img-1``... (their inputs are passed as arrays)."""
    return [Item(item_id=f"img-{i}", kind="image", uri=f"/unused/{i}.png") for i in range(count)]


def box_array(prediction: Prediction) -> np.ndarray:
    """The prediction's boxes as an ``(n, 4)`` xyxy array; every region must be a ``Box``."""
    regions = [s.region for s in prediction.suggestions]
    assert all(isinstance(r, Box) for r in regions)
    return np.array([r.box_xyxy for r in regions if isinstance(r, Box)]).reshape(-1, 4)


# -- image classifiers ------------------------------------------------------------------

CLASSIFIER_CLASSES = ("cat", "dog", "cup")


@functools.cache
def tiny_classifier(name: str = "tiny-classifier", winner: int | None = 0) -> ImageClassifier:
    """A random EfficientNet-Lite0 over ``CLASSIFIER_CLASSES`` at 64 px, CPU, seeded.

    ``winner``: the class whose head bias is raised, so every image is (mostly) it;
    ``None`` leaves the random head. Built once per ``(name, winner)``.
    """
    import torch

    from engine.models.classify.classifier import ImageClassifier

    torch.manual_seed(0)
    classifier = ImageClassifier(
        None, "efficientnet_lite0", name=name, class_names=CLASSIFIER_CLASSES,
        image_size_px=64, device="cpu",
    )  # fmt: skip
    if winner is not None:
        fc: Any = classifier._net._fc
        with torch.no_grad():
            fc.bias.zero_()
            fc.bias[winner] = 4.0
    return classifier


def save_tiny_classifier(path: Path) -> dict[str, Any]:
    """Save ``tiny_classifier(winner=None)``'s state dict at ``path``; its asset spec."""
    import hashlib

    import torch

    torch.save(tiny_classifier(winner=None)._net.state_dict(), path)
    data = path.read_bytes()
    return {
        "filename": path.name,
        "sha256": hashlib.sha256(data).hexdigest(),
        "size_bytes": len(data),
        "sources": [{"path": str(path)}],
    }


# -- BERT token classifiers --------------------------------------------------------------

NER_TAGS = ("O", "B-PER", "I-PER", "B-LOC", "I-LOC")
BERT_HIDDEN = 32


def tiny_tokenizer() -> Any:
    """A BERT-style fast tokenizer (lowercase, accents stripped) over a tiny vocab."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = string.ascii_lowercase + string.digits
    pieces = [*letters, *string.punctuation, *("##" + c for c in letters)]
    words = ["paris", "new", "york", "the", "in", "anna"]
    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + pieces + words))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])],
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        unk_token="[UNK]",
        pad_token="[PAD]",
        cls_token="[CLS]",
        sep_token="[SEP]",
        mask_token="[MASK]",
    )


def tiny_bert(tokenizer: Any, tags: tuple[str, ...] = NER_TAGS, seed: int = 0) -> Any:
    """A 2-layer, 32-wide random ``BertForTokenClassification`` over ``tags`` (eval mode)."""
    import torch
    from transformers import BertConfig, BertForTokenClassification

    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer.get_vocab()),
        hidden_size=BERT_HIDDEN,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        id2label=dict(enumerate(tags)),
        label2id={t: i for i, t in enumerate(tags)},
    )
    return BertForTokenClassification(config).eval()


def save_tiny_ner(directory: Path, seed: int = 0) -> Path:
    """A tiny random tagger + its tokenizer saved as a checkpoint at ``directory``."""
    tokenizer = tiny_tokenizer()
    tiny_bert(tokenizer, seed=seed).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def save_tiny_encoder(directory: Path) -> Path:
    """A tiny random BERT encoder (no head) + tokenizer saved like a hub base model."""
    tokenizer = tiny_tokenizer()
    tiny_bert(tokenizer).bert.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory
