"""Beam search over spaCy's transition-based NER with locally normalised scores.

``EntityRecognizer.beam_parse`` in spaCy 3.8 feeds the beam the *raw* action
scores of the parser's output layer (``thinc.extra.search.Beam`` adds them up
along a path and ``Beam.probs`` softmaxes the totals). The greedy pipelines are
trained with a softmax over the *valid* actions of each step, so raw sums are
not log-probabilities: a path through an entity whose ``I-`` logits happen to
be large wins, which is the degenerate parse an earlier check saw ("Last
spring, Émilie flew from Paris to Berlin" as one DATE at p = 0.95, while the
greedy parse, and the locally normalised beam, say DATE / GPE / GPE).

``run_beam`` therefore drives spaCy's own ``BeamBatch`` itself, one step at a
time, handing it ``log_softmax`` over the valid actions of each state. A
path's score is then its log-probability under the model, the beam's final
states are the most probable parses it kept, and ``Beam.probs`` renormalises
them over the beam (an approximation of the posterior: mass outside the beam
is dropped). The step model's token vectors (the NER's own ``tok2vec``) come
back from the same forward for the item embedding.

Validity of an action is spaCy's (``TransitionSystem.is_valid``), cached per
state kind: for docs without preset entities (we always pass fresh
``nlp.make_doc`` docs) it depends only on the open entity's label, whether the
next token is the last, whether it is whitespace and whether the one after it
starts a sentence (see ``spacy/pipeline/_parser_internals/ner.pyx``).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
EntityKey = tuple[int, int, str]  # token start, token end (exclusive), label
_INVALID = -1e4


@dataclass(frozen=True)
class DocBeam:
    """One doc's parses: ``(probability, entities)`` best first, and its token vectors."""

    parses: tuple[tuple[float, tuple[EntityKey, ...]], ...]
    token_vectors: FloatArray  # [n_tokens, width]

    @property
    def best(self) -> tuple[EntityKey, ...]:
        return self.parses[0][1] if self.parses else ()

    @property
    def uncertainty(self) -> float:
        """``1 - P(best parse)``: the chance the beam's best labelling is not the one."""
        return float(min(max(1.0 - self.parses[0][0], 0.0), 1.0)) if self.parses else 0.0

    def marginals(self) -> dict[EntityKey, float]:
        """``P(entity)`` for every entity of any kept parse (sum over parses containing it)."""
        out: dict[EntityKey, float] = defaultdict(float)
        for prob, entities in self.parses:
            for entity in entities:
                out[entity] += prob
        return dict(out)


class _Validity:
    """Valid-action masks of NER states, cached by the state's kind (module docstring)."""

    def __init__(self, moves: Any) -> None:
        self.moves = moves
        self.names = [moves.get_class_name(i) for i in range(moves.n_moves)]
        self.cache: dict[tuple[Any, ...], npt.NDArray[np.bool_]] = {}

    def mask(self, state: Any, doc: Any, history: Sequence[int]) -> npt.NDArray[np.bool_]:
        open_label = self._open_label(history) if state.entity_is_open() else None
        b0, b1 = state.B(0), state.B(1)
        key = (
            open_label,
            state.buffer_length() < 2,
            b0 >= 0 and doc[b0].is_space,
            b1 >= 0 and doc[b1].is_sent_start is True,
        )
        found = self.cache.get(key)
        if found is None:
            found = np.array([self.moves.is_valid(state, n) for n in self.names], dtype=bool)
            self.cache[key] = found
        return found

    def _open_label(self, history: Sequence[int]) -> str:
        for clas in reversed(history):
            name = self.names[clas]
            if name.startswith("B-"):
                return name[2:]
        return "?"


def _log_softmax_valid(scores: FloatArray, valid: npt.NDArray[np.bool_]) -> FloatArray:
    masked = np.where(valid, scores, -np.inf)
    top = masked.max(axis=1, keepdims=True)
    top = np.where(np.isfinite(top), top, 0.0)
    log_z = top + np.log(np.exp(masked - top).sum(axis=1, keepdims=True) + 1e-30)
    return np.ascontiguousarray(np.where(valid, scores - log_z, _INVALID), dtype=np.float32)


def run_beam(ner: Any, docs: Sequence[Any], *, width: int, density: float) -> list[DocBeam]:
    """Beam-parse ``docs`` (fresh, non-empty ``Doc`` objects) with spaCy's ``ner`` pipe."""
    from spacy.pipeline._parser_internals._beam_utils import BeamBatch

    docs = list(docs)
    if not docs:
        return []
    moves = ner.moves
    validity = _Validity(moves)
    batch = BeamBatch(moves, moves.init_batch(docs), None, width, density=density)
    step_model = ner.model.predict(docs)
    vectors = np.asarray(step_model.tokvecs, dtype=np.float32)
    while not batch.is_done:
        states, masks = [], []
        every = batch.get_states()
        k = 0
        for beam, doc in zip(batch.beams, batch.docs, strict=True):
            histories = beam.histories
            for i in range(len(beam)):  # the live states; histories has ``width`` rows
                state = every[k]
                k += 1
                if not state.is_final():
                    states.append(state)
                    masks.append(validity.mask(state, doc, histories[i]))
        if not states:
            break
        scores = np.asarray(step_model.predict(states), dtype=np.float32)
        batch.advance(_log_softmax_valid(scores, np.stack(masks)))
    step_model.clear_memory()
    out, row = [], 0
    for doc, beam in zip(docs, batch.beams, strict=True):
        merged: dict[tuple[EntityKey, ...], float] = defaultdict(float)
        for prob, entities in moves.get_beam_parses(beam):
            merged[tuple(sorted(entities))] += float(prob)
        parses = tuple(sorted(((p, e) for e, p in merged.items()), key=lambda pe: -pe[0]))
        out.append(DocBeam(parses, vectors[row : row + len(doc)]))
        row += len(doc)
    return out
