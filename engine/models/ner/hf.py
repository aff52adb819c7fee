"""Entity tagger over any transformers token-classification checkpoint.

``HfTokenTagger`` turns text items into ``Span`` suggestions in character
offsets. Pipeline: encode each text once with the fast tokenizer (offsets and
word ids, no special tokens) -> cut into overlapping windows of ``max_length``
tokens (``engine.models.ner.windows``) -> run length-sorted, dynamically padded
batches of ``batch_size`` windows (default 16 on CPU, 64 on GPU; fp16 / bf16 on
GPU, softmax in fp32) -> merge the windows back ->
aggregate sub-tokens to words (``first`` / ``average`` / ``max``, see
``engine.models.ner.decode``) -> decode the word tags (BIO, lenient) into spans.

Per suggestion: ``score`` = mean over the span's words of the probability mass
of its entity type (all ``B-X`` / ``I-X`` / ... columns); ``probs`` row = the
mean word tag distribution over the span (``class_names`` = the tag names);
attributes ``entropy`` (mean normalised word entropy) and ``n_words``. The full
word table travels with the prediction (``TextPrediction.tokens``) for
sentence-level uncertainty (``engine.models.ner.uncertainty``), also as
``signals`` (``token_probs`` / ``token_sentence`` / ``token_span``).

From the same forward (``engine.models.ner.hf_passes``): ``embedding`` = the
mean of the final encoder hidden states over the text's content tokens,
reduced to at most 256 wide and L2-normalised. Opt-in ``mc_passes = T > 0``
adds ``T`` MC-dropout passes as ``signals["mc_token_probs"]``
(``float16[T, n_words, n_tags]``); 0 (default) runs nothing more.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.config import ModelSpec
from engine.models.base import BaseModel, pick_device, pick_dtype
from engine.models.ner.checkpoint import checkpoint_sha256, local_checkpoint, resolve_checkpoint
from engine.models.ner.decode import (
    AGGREGATIONS,
    TagSet,
    aggregate_words,
    decode_ids,
    sentence_ids,
    word_offsets,
)
from engine.models.ner.hf_passes import (
    Encoded,
    forward_windows,
    mc_word_probs,
    mean_embedding,
    merge_per_text,
)
from engine.models.ner.uncertainty import TextPrediction, TextTokens, text_of, word_scores
from engine.models.ner.windows import Window, plan_windows
from engine.models.versioning import model_version
from engine.types import Item, Prediction, Span, Suggestion

FloatArray = npt.NDArray[np.float32]
# Windows per forward pass when not configured. On CPU small batches win: MiniLM
# on 2 cores ran ~88 sentences/s at 8-16 windows, 58 at 64 and 22 at 256.
CPU_BATCH, CUDA_BATCH = 16, 64


@dataclass(frozen=True)
class TextBatch:
    texts: list[str]
    encoded: list[Encoded]
    windows: list[Window]


@dataclass(frozen=True)
class TaggerOutput:
    """Per text: token tag rows, token hidden rows, MC word rows (``None`` when off)."""

    probs: list[FloatArray]
    hidden: list[FloatArray]
    mc: list[npt.NDArray[np.float16]] | None


class HfTokenTagger(BaseModel):
    """Token classification -> character-offset entity spans (see module docstring)."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str,
        version: str,
        device: str = "auto",
        precision: str = "auto",
        max_length: int | None = None,
        stride: int = 32,
        aggregation: str = "first",
        batch_size: int | None = None,
        max_chars: int = 100_000,
        mc_passes: int = 0,
    ) -> None:
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("HfTokenTagger needs a fast tokenizer (offsets and word ids)")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if (batch_size is not None and batch_size < 1) or max_chars < 1:
            raise ValueError("batch_size and max_chars must be >= 1")
        if not isinstance(mc_passes, int) or mc_passes < 0:
            raise ValueError(f"mc_passes must be an integer >= 0, got {mc_passes!r}")
        self.mc_passes = mc_passes
        self.name, self.version = name, version
        self.device = pick_device(device)
        self.dtype = pick_dtype(self.device, precision)
        self.model = model.to(device=self.device, dtype=self.dtype).eval()
        self.tokenizer = tokenizer
        id2label = model.config.id2label
        self.tagset = TagSet.parse([str(id2label[i]) for i in range(len(id2label))])
        self.prefix_ids, self.suffix_ids = _special_ids(tokenizer)
        limit = min(int(getattr(model.config, "max_position_embeddings", 512)), 512)
        n_special = len(self.prefix_ids) + len(self.suffix_ids)
        self.max_length = int(max_length or limit)
        if not n_special < self.max_length <= limit:
            raise ValueError(f"max_length must be in ({n_special}, {limit}], got {max_length}")
        self.window = self.max_length - n_special
        if not 0 <= stride < self.window:
            raise ValueError(f"stride must be in [0, {self.window}), got {stride}")
        self.stride, self.aggregation = stride, aggregation
        self.batch_size = batch_size or (
            CUDA_BATCH if self.device.startswith("cuda") else CPU_BATCH
        )
        self.max_chars = max_chars
        pad = tokenizer.pad_token_id
        self.pad_id = int(pad if pad is not None else 0)

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | Path,
        *,
        name: str = "hf-ner",
        version: str | None = None,
        **options: Any,
    ) -> HfTokenTagger:
        """Load a local checkpoint directory (or a cached hub name; never downloads)."""
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        source = local_checkpoint(checkpoint)
        try:
            tokenizer = AutoTokenizer.from_pretrained(source, local_files_only=True)
            model = AutoModelForTokenClassification.from_pretrained(source, local_files_only=True)
        except OSError as exc:
            raise ValueError(
                f"no token-classification checkpoint at {checkpoint!s} on disk "
                f"(weights are never downloaded): {exc}"
            ) from exc
        if version is None:
            labels = [str(model.config.id2label[i]) for i in range(model.config.num_labels)]
            keys = ("max_length", "stride", "aggregation", "mc_passes")
            settings = {k: options.get(k) for k in keys}
            local = Path(source)
            weights = (
                checkpoint_sha256(local)
                if local.is_dir()
                else hashlib.sha256(f"{source}@{model.config._commit_hash}".encode()).hexdigest()
            )
            version = model_version(weights, {**settings, "tags": labels})
        return cls(model, tokenizer, name=name, version=version, **options)

    # -- BaseModel stages -------------------------------------------------------

    def preprocess(self, items: Sequence[Item], inputs: Sequence[Any] | None) -> TextBatch:
        texts = [
            self._text_of(item, None if inputs is None else inputs[i])
            for i, item in enumerate(items)
        ]
        encoded = self.encode(texts)
        windows = plan_windows([len(e.ids) for e in encoded], self.window, self.stride)
        return TextBatch(texts, encoded, windows)

    def forward(self, batch: TextBatch) -> TaggerOutput:
        n_tags = len(self.tagset.names)
        rows = forward_windows(self, batch.encoded, batch.windows, n_tags, hidden=True)
        assert rows.hidden is not None
        width = int(getattr(self.model.config, "hidden_size", 0))  # only for word-less texts
        mc = None
        if self.mc_passes:
            mc = mc_word_probs(self, batch.encoded, batch.windows, n_tags, self.mc_passes)
        return TaggerOutput(
            self.merge(batch.encoded, batch.windows, rows.probs),
            merge_per_text(batch.encoded, batch.windows, rows.hidden, width),
            mc,
        )

    def postprocess(
        self, items: Sequence[Item], raw: TaggerOutput, batch: TextBatch
    ) -> list[Prediction]:
        mc: Sequence[npt.NDArray[np.float16] | None] = raw.mc or [None] * len(items)
        return [
            self._prediction(item, text, enc, probs, mean_embedding(hidden), passes)
            for item, text, enc, probs, hidden, passes in zip(
                items, batch.texts, batch.encoded, raw.probs, raw.hidden, mc, strict=True
            )
        ]

    # -- building blocks (also used by training evaluation) ---------------------

    def encode(self, texts: Sequence[str]) -> list[Encoded]:
        """Tokenize raw texts once (no special tokens): ids, char offsets, word ids."""
        enc = self.tokenizer(
            list(texts),
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_token_type_ids=False,
            return_attention_mask=False,
        )
        return [_encoded(enc, i) for i in range(len(texts))]

    def encode_words(self, sentences: Sequence[Sequence[str]]) -> list[Encoded]:
        """Tokenize pre-split words (CoNLL); word ids index the given words."""
        enc = self.tokenizer(
            [list(words) for words in sentences],
            is_split_into_words=True,
            add_special_tokens=False,
            return_offsets_mapping=True,
            return_token_type_ids=False,
            return_attention_mask=False,
        )
        return [_encoded(enc, i) for i in range(len(sentences))]

    def run_windows(
        self, encoded: Sequence[Encoded], windows: Sequence[Window]
    ) -> list[FloatArray]:
        """Tag-probability rows ``[window.length, n_tags]`` for every window (fp32)."""
        return forward_windows(self, encoded, windows, len(self.tagset.names)).probs

    def merge(
        self, encoded: Sequence[Encoded], windows: Sequence[Window], rows: Sequence[FloatArray]
    ) -> list[FloatArray]:
        """Token rows ``[n_tokens, n_tags]`` per text from the window rows."""
        return merge_per_text(encoded, windows, rows, len(self.tagset.names))

    def predict_words(self, sentences: Sequence[Sequence[str]]) -> list[FloatArray]:
        """Word rows ``[n_words, n_tags]`` for pre-split sentences (no span decoding)."""
        import torch

        encoded = self.encode_words(sentences)
        windows = plan_windows([len(e.ids) for e in encoded], self.window, self.stride)
        with torch.inference_mode():
            rows = self.run_windows(encoded, windows)
        merged = self.merge(encoded, windows, rows)
        return [
            _words_rows(probs, enc.word_ids, len(words), self.aggregation)
            for probs, enc, words in zip(merged, encoded, sentences, strict=True)
        ]

    # -- helpers ----------------------------------------------------------------

    def _text_of(self, item: Item, given: Any) -> str:
        return text_of(item, given, max_chars=self.max_chars)

    def _prediction(
        self,
        item: Item,
        text: str,
        enc: Encoded,
        token_probs: FloatArray,
        embedding: FloatArray | None = None,
        mc_passes: npt.NDArray[np.float16] | None = None,
    ) -> Prediction:
        word_probs = aggregate_words(token_probs, enc.word_ids, self.aggregation)
        offsets = (
            word_offsets(enc.offsets, enc.word_ids) if len(enc.ids) else np.zeros((0, 2), np.int64)
        )
        spans = decode_ids(word_probs.argmax(axis=1), self.tagset) if len(word_probs) else []
        sentence = sentence_ids(text, offsets[:, 0])
        span_of_word = np.full(len(word_probs), -1, dtype=np.intp)
        suggestions, rows = [], []
        entropy = word_scores(word_probs, "entropy")
        for index, (first, last, entity) in enumerate(spans):
            span_of_word[first:last] = index
            sentence[first:last] = sentence[first]  # a span never crosses a sentence
            start, end = int(offsets[first, 0]), int(offsets[last - 1, 1])
            mass = self.tagset.type_mass(word_probs[first:last], entity)
            suggestions.append(
                Suggestion(
                    label=entity,
                    score=min(float(mass.mean()), 1.0),
                    region=Span(start, end, text[start:end]),
                    model_name=self.name,
                    model_version=self.version,
                    attributes={
                        "entropy": round(float(entropy[first:last].mean()), 6),
                        "n_words": last - first,
                    },
                )
            )
            rows.append(word_probs[first:last].mean(axis=0))
        n_sentences = int(sentence.max()) + 1 if len(sentence) else 0
        tokens = TextTokens(
            offsets.astype(np.int64),
            word_probs.astype(np.float32),
            sentence,
            span_of_word,
            n_sentences,
            self.tagset.names,
        )
        probs = np.stack(rows) if rows else np.zeros((0, len(self.tagset.names)), np.float32)
        return TextPrediction(
            item_id=item.item_id,
            model_name=self.name,
            model_version=self.version,
            suggestions=tuple(suggestions),
            probs=probs,
            class_names=self.tagset.names,
            embedding=embedding,
            signals={} if mc_passes is None else {"mc_token_probs": mc_passes},
            tokens=tokens,
        )


def _encoded(enc: Any, i: int) -> Encoded:
    word_ids = np.array([-1 if w is None else w for w in enc.word_ids(i)], dtype=np.intp)
    offsets = np.asarray(enc["offset_mapping"][i], dtype=np.int64).reshape(-1, 2)
    return Encoded(list(enc["input_ids"][i]), offsets, word_ids)


def _words_rows(
    probs: FloatArray, word_ids: npt.NDArray[np.intp], n_words: int, aggregation: str
) -> FloatArray:
    """Word rows for ``n_words`` given words; a word with no token gets a uniform row."""
    out = np.full((n_words, probs.shape[1]), 1.0 / probs.shape[1], dtype=np.float32)
    if len(word_ids):
        present = np.unique(word_ids)
        out[present] = aggregate_words(probs, word_ids, aggregation)
    return out


def _special_ids(tokenizer: Any) -> tuple[list[int], list[int]]:
    """Special token ids the tokenizer puts before / after a single sequence."""
    probe = tokenizer("a", add_special_tokens=True, return_special_tokens_mask=True)
    ids, special = list(probe["input_ids"]), list(probe["special_tokens_mask"])
    content = [i for i, s in enumerate(special) if not s]
    if not content:
        return [], []
    return ids[: content[0]], ids[content[-1] + 1 :]


_OPTIONS = {"max_length", "stride", "aggregation", "batch_size", "max_chars", "mc_passes"}


def build_hf_ner(spec: ModelSpec, models_dir: Path, device: str, precision: str) -> HfTokenTagger:
    """Registry builder for family ``hf-ner`` (params: checkpoint + tagger options)."""
    unknown = sorted(set(spec.params) - _OPTIONS - {"checkpoint"})
    if unknown:
        raise ValueError(
            f"model {spec.name!r}: unknown param(s) {unknown}; "
            f"allowed: {sorted(_OPTIONS | {'checkpoint'})}"
        )
    path = resolve_checkpoint(spec, models_dir)
    options = {k: v for k, v in spec.params.items() if k in _OPTIONS}
    tagger = HfTokenTagger.from_pretrained(
        path, name=spec.name, version="pending", device=device, precision=precision, **options
    )
    behaviour = {k: v for k, v in spec.params.items() if k != "batch_size"}  # speed only
    tagger.version = f"{spec.name}-{model_version(checkpoint_sha256(path), behaviour)}"
    return tagger
