"""Push stored predictions into a Label Studio project, in chunks, resumable.

For a big backlog pre-labeled offline: instead of Label Studio asking the ML
backend for 100,000 tasks in one synchronous "retrieve predictions" call, the
engine writes its predictions through the REST API, ``chunk_size`` items (and at
most ``max_chunk_bytes``) per request:

- an item with no task yet -> one ``POST /api/projects/{id}/import`` per chunk
  of tasks, each carrying its prediction (task data: the media value, see
  ``MediaMapping``, and ``item_id``);
- an item whose task exists (matched by ``data.item_id``, else by the media
  value) -> one ``POST /api/projects/{id}/import/predictions`` per chunk;
- an item whose task already holds a prediction of this model version -> left
  alone. That check reads Label Studio itself (one light listing of the
  project's tasks at start), so a rerun after a crash - even one between
  Label Studio's answer and our bookkeeping - never pushes an item twice.

Predictions are converted against the project's own labeling config
(``to_ls_prediction``); an item that cannot be converted, and every item of a
chunk Label Studio refuses, is recorded as a job error and the push goes on.
The job (kind ``push``) is keyed by (Label Studio URL, project, model version):
a rerun reuses it, clears its old errors and retries what is missing.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlparse

from engine.imaging.decode import image_size_px
from engine.labelstudio.client import LabelStudioClient, LabelStudioError, TaskRef
from engine.labelstudio.results import LabelingConfig, parse_labeling_config, to_ls_prediction
from engine.store import NotFoundError, Store
from engine.types import Box, Item

LOCAL_FILES_PREFIX = "/data/local-files/?d="
ITEM_ID_KEY = "item_id"
DEFAULT_CHUNK_SIZE = 500
MAX_CHUNK_SIZE = 5000
DEFAULT_MAX_CHUNK_BYTES = 32 * 1024**2


@dataclass(frozen=True)
class MediaMapping:
    """How an image item's uri becomes the value Label Studio opens.

    A local path under ``root`` becomes ``url_prefix`` + its path relative to
    ``root`` (URL-quoted). The default is Label Studio's local-files form: run it
    with ``LOCAL_FILES_SERVING_ENABLED=true`` and ``LOCAL_FILES_DOCUMENT_ROOT``
    = ``root``. A prefix like ``https://cdn.example.com/images/`` serves the same
    tree from elsewhere; an empty prefix with root ``/`` sends absolute paths.
    An http(s) uri or a Label Studio ``/data/...`` path is sent unchanged.
    """

    url_prefix: str = LOCAL_FILES_PREFIX
    root: Path = Path("/")

    def value_for(self, uri: str) -> str:
        parsed = urlparse(uri)
        if parsed.scheme in ("http", "https") or uri.startswith("/data/"):
            return uri
        if parsed.scheme not in ("", "file") and len(parsed.scheme) > 1:
            raise ValueError(f"cannot give Label Studio a {parsed.scheme}:// uri ({uri})")
        path = Path(unquote(parsed.path) if parsed.scheme == "file" else uri).resolve()
        root = self.root.expanduser().resolve()
        if not path.is_relative_to(root):
            raise ValueError(f"{path} is outside the media root {root} (--media-root)")
        relative = path.relative_to(root).as_posix()
        if not self.url_prefix:
            return str(path)
        return self.url_prefix + quote(relative, safe="/")


@dataclass(frozen=True)
class ChunkResult:
    """One request: what it sent, and the error if Label Studio refused it."""

    index: int
    kind: str  # "tasks" (new tasks with predictions) or "predictions" (existing tasks)
    n_items: int
    n_bytes: int
    seconds: float
    error: str | None = None


@dataclass
class PushReport:
    job_id: str
    model_version: str
    total: int = 0
    already: int = 0  # held a prediction of this version before this run
    pushed: int = 0
    failed: int = 0
    skipped: int = 0  # items of a kind the project does not show
    chunks: list[ChunkResult] = field(default_factory=list)
    scan_seconds: float = 0.0
    seconds: float = 0.0

    @property
    def failed_chunks(self) -> int:
        return sum(1 for c in self.chunks if c.error is not None)

    def summary(self) -> str:
        return (
            f"pushed {self.pushed}, already in Label Studio {self.already}, failed {self.failed}, "
            f"skipped {self.skipped} of {self.total} ({len(self.chunks)} requests, "
            f"{self.failed_chunks} refused)"
        )


ChunkCallback = Callable[[ChunkResult, PushReport], None]


def push_job_id(url: str, project_id: int, model_version: str) -> str:
    key = f"{url.rstrip('/')}|{int(project_id)}|{model_version}"
    return "push-" + hashlib.sha256(key.encode()).hexdigest()[:16]


def resolve_model_version(store: Store, model_version: str | None) -> str:
    """The given version (which must have predictions), else the store's only one."""
    versions = store.prediction_versions()
    if model_version is not None:
        if model_version not in versions:
            known = ", ".join(versions) or "none"
            raise ValueError(f"no stored predictions of model version {model_version!r} ({known})")
        return model_version
    if not versions:
        raise ValueError("the store holds no predictions to push; run `labelengine prelabel`")
    if len(versions) > 1:
        raise ValueError(f"several model versions are stored; pick one: {', '.join(versions)}")
    return versions[0]


def push_predictions(
    store: Store,
    client: LabelStudioClient,
    project_id: int,
    *,
    model_version: str | None = None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
    max_chunk_bytes: int = DEFAULT_MAX_CHUNK_BYTES,
    media: MediaMapping | None = None,
    on_chunk: ChunkCallback | None = None,
) -> PushReport:
    """Write the stored predictions of ``model_version`` into Label Studio (module doc)."""
    if not 1 <= chunk_size <= MAX_CHUNK_SIZE:
        raise ValueError(f"chunk_size must be in [1, {MAX_CHUNK_SIZE}], got {chunk_size}")
    if max_chunk_bytes < 1024:
        raise ValueError(f"max_chunk_bytes must be at least 1024, got {max_chunk_bytes}")
    version = resolve_model_version(store, model_version)
    config = parse_labeling_config(client.labeling_config(project_id))
    started = time.monotonic()
    report = PushReport(_start_job(store, client.url, project_id, version, chunk_size), version)
    report.total = store.count_predictions(version)
    store.update_job(report.job_id, total=report.total)
    tasks = _TaskIndex.scan(client, project_id)
    report.scan_seconds = time.monotonic() - started
    run = _Run(store, client, project_id, report, max_chunk_bytes, on_chunk)
    try:
        for item, score in _predicted_items(store, version):
            run.add(item, score, config, tasks, media or MediaMapping(), chunk_size)
        run.flush_all()
    except BaseException as exc:
        store.update_job(report.job_id, state="failed", message=f"interrupted: {exc!r}"[:2000])
        raise
    report.seconds = time.monotonic() - started
    store.update_job(
        report.job_id,
        state="succeeded",
        done=report.already + report.pushed,
        failed=report.failed,
        skipped=report.skipped,
        message=report.summary(),
    )
    return report


def _start_job(store: Store, url: str, project_id: int, version: str, chunk_size: int) -> str:
    job_id = push_job_id(url, project_id, version)
    config = {"label_studio_url": url, "project": project_id, "chunk_size": chunk_size}
    try:
        store.get_job(job_id)
    except NotFoundError:
        store.create_job("push", config, model_version=version, job_id=job_id)
    store.clear_job_errors(job_id)  # a new attempt: old errors are retried, not kept
    store.update_job(job_id, state="running", config=config, done=0, failed=0, skipped=0)
    return job_id


@dataclass
class _TaskIndex:
    """The project's tasks by our item id and by media value."""

    by_item: dict[str, TaskRef]
    by_value: dict[str, TaskRef]

    @classmethod
    def scan(cls, client: LabelStudioClient, project_id: int) -> _TaskIndex:
        by_item: dict[str, TaskRef] = {}
        by_value: dict[str, TaskRef] = {}
        for task in client.iter_tasks(project_id):
            item_id = task.data.get(ITEM_ID_KEY)
            if isinstance(item_id, str):
                by_item.setdefault(item_id, task)
            for value in task.data.values():
                if isinstance(value, str) and len(value) < 4096:
                    by_value.setdefault(value, task)
        return cls(by_item, by_value)

    def find(self, item_id: str, value: str) -> TaskRef | None:
        return self.by_item.get(item_id) or self.by_value.get(value)


def _predicted_items(store: Store, version: str) -> Iterator[tuple[Item, float]]:
    """``(item, prediction score)`` for every item with a prediction of ``version``."""
    for item_id, score in store.iter_predicted(version):
        yield store.get_item(item_id), score


@dataclass
class _Pending:
    kind: str
    payloads: list[dict[str, Any]] = field(default_factory=list)
    item_ids: list[str] = field(default_factory=list)
    n_bytes: int = 0


class _Run:
    """Buffers payloads per request kind and sends them chunk by chunk."""

    def __init__(
        self,
        store: Store,
        client: LabelStudioClient,
        project_id: int,
        report: PushReport,
        max_chunk_bytes: int,
        on_chunk: ChunkCallback | None,
    ) -> None:
        self.store, self.client, self.project_id = store, client, project_id
        self.report, self.max_chunk_bytes, self.on_chunk = report, max_chunk_bytes, on_chunk
        self.pending = {kind: _Pending(kind) for kind in ("tasks", "predictions")}

    def add(
        self,
        item: Item,
        score: float,
        config: LabelingConfig,
        tasks: _TaskIndex,
        media: MediaMapping,
        chunk_size: int,
    ) -> None:
        target = config.object_for(item.kind)
        if target is None:
            self.report.skipped += 1
            return
        try:
            value = media.value_for(item.uri or "") if item.kind == "image" else item.text or ""
            task = tasks.find(item.item_id, value)
            if task is not None and self.report.model_version in task.model_versions:
                self.report.already += 1
                return
            prediction = _prediction(self.store, item, score, config, self.report.model_version)
        except ValueError as exc:
            self._fail([item.item_id], f"cannot convert: {exc}")
            return
        payload: dict[str, Any]
        if task is None:
            data = {target.data_key: value, ITEM_ID_KEY: item.item_id}
            payload, kind = {"data": data, "predictions": [prediction]}, "tasks"
        else:
            payload, kind = {"task": task.task_id, **prediction}, "predictions"
        pending = self.pending[kind]
        size = len(json.dumps(payload))
        if pending.payloads and pending.n_bytes + size > self.max_chunk_bytes:
            self.flush(pending)
        pending.payloads.append(payload)
        pending.item_ids.append(item.item_id)
        pending.n_bytes += size
        if len(pending.payloads) >= chunk_size:
            self.flush(pending)

    def flush_all(self) -> None:
        for pending in self.pending.values():
            if pending.payloads:
                self.flush(pending)

    def flush(self, pending: _Pending) -> None:
        self._send(pending.kind, pending.payloads, pending.item_ids, pending.n_bytes)
        pending.payloads, pending.item_ids, pending.n_bytes = [], [], 0

    def _send(
        self, kind: str, payloads: list[dict[str, Any]], item_ids: list[str], n_bytes: int
    ) -> None:
        """One request; a chunk refused as invalid (400 / 413) is halved and retried, so
        only the bad tasks fail. A request without an answer is not retried: it may have
        landed, and the next run's scan finds out."""
        started = time.monotonic()
        try:
            if kind == "tasks":
                self.client.import_tasks(self.project_id, payloads)
            else:
                self.client.import_predictions(self.project_id, payloads)
            error: LabelStudioError | None = None
        except LabelStudioError as exc:
            error = exc
        if error is not None and error.status in (400, 413) and len(payloads) > 1:
            half = len(payloads) // 2
            for part in (slice(0, half), slice(half, None)):
                part_bytes = sum(len(json.dumps(p)) for p in payloads[part])
                self._send(kind, payloads[part], item_ids[part], part_bytes)
            return
        chunk = ChunkResult(
            len(self.report.chunks),
            kind,
            len(payloads),
            n_bytes,
            time.monotonic() - started,
            None if error is None else str(error),
        )
        self.report.chunks.append(chunk)
        if error is None:
            self.report.pushed += chunk.n_items
            self.store.add_progress(self.report.job_id, done=chunk.n_items)
        else:
            self._fail(item_ids, f"request {chunk.index} refused: {error}")
        if self.on_chunk is not None:
            self.on_chunk(chunk, self.report)

    def _fail(self, item_ids: list[str], message: str) -> None:
        self.report.failed += len(item_ids)
        self.store.record_job_errors(self.report.job_id, [(i, message) for i in item_ids])
        self.store.add_progress(self.report.job_id, failed=len(item_ids))


def _prediction(
    store: Store, item: Item, score: float, config: LabelingConfig, version: str
) -> dict[str, Any]:
    records = store.suggestions_for(item.item_id, model_version=version)
    suggestions = [r.suggestion for r in records if r.status != "rejected"]
    ids = [r.suggestion_id for r in records if r.status != "rejected"]
    size = None
    if item.kind == "image" and any(isinstance(s.region, Box) for s in suggestions):
        size = image_size_px(item, (s.region for s in suggestions))
        if size is None:
            raise ValueError("image size unknown (no local file, no width/height metadata)")
    return to_ls_prediction(
        suggestions,
        config,
        model_version=version,
        item_score=score,
        image_size_px=size,
        suggestion_ids=ids,
        text=item.text,
    )
