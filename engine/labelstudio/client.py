"""A small typed client for the parts of Label Studio's REST API the engine uses.

Over ``requests`` (already installed with ultralytics and Ray); no
label-studio-sdk at run time. Auth (``engine.labelstudio.auth``): a legacy token is sent
as ``Token <key>``; a personal access token (a JWT, Label Studio >= 1.16) is
exchanged at ``/api/token/refresh/`` for a short-lived access token sent as
``Bearer``, renewed before it expires and once on a 401.

Every failing call raises ``LabelStudioError`` naming the request, the status
and the start of the body, so a push can record it and go on.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from engine.labelstudio.auth import REFRESH_PATH, LabelStudioAuth, LabelStudioAuthError

DEFAULT_TIMEOUT_S = 120.0
TASK_PAGE_SIZE = 1000


class LabelStudioError(RuntimeError):
    """A Label Studio request failed: ``status`` is ``None`` when no answer came back."""

    def __init__(self, method: str, path: str, status: int | None, body: str) -> None:
        self.method, self.path, self.status, self.body = method, path, status, body
        what = f"HTTP {status}" if status is not None else "no answer"
        super().__init__(f"Label Studio {method} {path}: {what}: {body[:1000]}")


@dataclass(frozen=True)
class TaskRef:
    """A task as listed (no annotations or prediction results)."""

    task_id: int
    data: dict[str, Any]
    model_versions: frozenset[str]


class LabelStudioClient:
    """Label Studio at ``url`` (``http://host:8080``) with an API key (legacy or PAT)."""

    def __init__(self, url: str, api_key: str, *, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        import requests

        if not url.startswith(("http://", "https://")):
            raise ValueError(f"Label Studio URL must start with http:// or https://, got {url!r}")
        if not api_key:
            raise ValueError("a Label Studio API key is needed (--api-key or LABEL_STUDIO_API_KEY)")
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s
        self._auth = LabelStudioAuth(
            self.url, api_key, timeout_s=timeout_s, post_json=_requests_post_json
        )
        self._authorization()  # a personal access token that does not work fails here
        self._session = requests.Session()

    def close(self) -> None:
        self._session.close()

    def __enter__(self) -> LabelStudioClient:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # -- transport --------------------------------------------------------------

    def _authorization(self, rejected: str | None = None) -> str:
        """The Authorization header; a new one when ``rejected`` got a 401."""
        try:
            return self._auth.header() if rejected is None else self._auth.renew(rejected)
        except LabelStudioAuthError as exc:
            raise LabelStudioError("POST", REFRESH_PATH, exc.status, exc.reason) from exc

    def request(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        params: dict[str, Any] | None = None,
    ) -> Any:
        """One call; the decoded JSON answer (``None`` for an empty body)."""
        import requests

        header = self._authorization()
        for attempt in (0, 1):
            try:
                response = self._session.request(
                    method,
                    self.url + path,
                    json=json_body,
                    params=params,
                    headers={"Authorization": header},
                    timeout=self.timeout_s,
                )
            except requests.RequestException as exc:
                raise LabelStudioError(method, path, None, str(exc)) from exc
            if response.status_code == 401 and attempt == 0 and self._auth.personal:
                header = self._authorization(rejected=header)
                continue
            break
        if response.status_code >= 400:
            raise LabelStudioError(method, path, response.status_code, response.text)
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError as exc:
            raise LabelStudioError(method, path, response.status_code, response.text) from exc

    # -- projects ---------------------------------------------------------------

    def version(self) -> str:
        return str(self.request("GET", "/api/version").get("release", "?"))

    def create_project(self, title: str, label_config: str) -> dict[str, Any]:
        return dict(
            self.request(
                "POST", "/api/projects", json_body={"title": title, "label_config": label_config}
            )
        )

    def get_project(self, project_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/projects/{int(project_id)}"))

    def labeling_config(self, project_id: int) -> str:
        return str(self.get_project(project_id)["label_config"])

    def add_local_files_storage(self, project_id: int, path: str, title: str = "") -> int:
        """Connect a local-files storage (``path`` under Label Studio's document root) so
        Label Studio serves ``/data/local-files/?d=...`` under it; returns its id."""
        body = {"project": int(project_id), "path": path, "title": title or path}
        body["use_blob_urls"] = True
        return int(self.request("POST", "/api/storages/localfiles", json_body=body)["id"])

    # -- tasks and predictions -----------------------------------------------------

    def iter_tasks(self, project_id: int, *, page_size: int = TASK_PAGE_SIZE) -> Iterator[TaskRef]:
        """Every task of a project, light (data and prediction versions), page by page."""
        # A filter naming the column makes the Data Manager compute it for each listed task
        # (the list leaves it empty otherwise); "empty or not empty" keeps every task, and
        # ordering by id keeps the pages stable.
        column = "filter:tasks:predictions_model_versions"
        either = [
            {"filter": column, "operator": "empty", "type": "List", "value": flag}
            for flag in (True, False)
        ]
        query = json.dumps(
            {"filters": {"conjunction": "or", "items": either}, "ordering": ["tasks:id"]}
        )
        page = 1
        while True:
            params = {"project": project_id, "page": page, "page_size": page_size, "query": query}
            try:
                answer = self.request("GET", "/api/tasks", params=params)
            except LabelStudioError as exc:
                if exc.status == 404 and page > 1:  # "Invalid page": past the last one
                    return
                raise
            tasks = answer.get("tasks", []) if isinstance(answer, dict) else answer
            for task in tasks:
                versions = str(task.get("predictions_model_versions") or "")
                yield TaskRef(
                    int(task["id"]),
                    dict(task.get("data") or {}),
                    frozenset(v.strip() for v in versions.split(",") if v.strip()),
                )
            if len(tasks) < page_size:
                return
            page += 1

    def import_tasks(self, project_id: int, tasks: Sequence[dict[str, Any]]) -> list[int]:
        """Create tasks (with their ``predictions``) in one call; returns the new task ids."""
        answer = self.request(
            "POST",
            f"/api/projects/{int(project_id)}/import",
            json_body=list(tasks),
            params={"return_task_ids": "true"},
        )
        if "import" in answer and "task_ids" not in answer:
            raise LabelStudioError(
                "POST",
                f"/api/projects/{project_id}/import",
                None,
                "this Label Studio imports asynchronously (not the Community edition); "
                "push supports the synchronous import only",
            )
        ids = [int(i) for i in answer.get("task_ids", [])]
        if len(ids) != len(tasks):
            raise LabelStudioError(
                "POST",
                f"/api/projects/{project_id}/import",
                None,
                f"sent {len(tasks)} tasks but Label Studio reports {len(ids)} created",
            )
        return ids

    def import_predictions(self, project_id: int, predictions: Sequence[dict[str, Any]]) -> int:
        """Add predictions (each names its ``task``) to existing tasks in one call."""
        answer = self.request(
            "POST",
            f"/api/projects/{int(project_id)}/import/predictions",
            json_body=list(predictions),
        )
        return int(answer.get("created", len(predictions))) if isinstance(answer, dict) else 0

    def predictions_of(self, task_id: int) -> list[dict[str, Any]]:
        return list(self.request("GET", "/api/predictions", params={"task": int(task_id)}))

    def get_task(self, task_id: int) -> dict[str, Any]:
        return dict(self.request("GET", f"/api/tasks/{int(task_id)}"))

    # -- ML backends ----------------------------------------------------------------

    def add_ml_backend(
        self,
        project_id: int,
        url: str,
        *,
        title: str = "labelengine",
        basic_auth: tuple[str, str] | None = None,
        interactive: bool = True,
    ) -> dict[str, Any]:
        """Connect an ML backend at ``url`` (Label Studio calls its /health and /setup now)."""
        body: dict[str, Any] = {
            "url": url,
            "project": int(project_id),
            "title": title,
            "is_interactive": interactive,
        }
        if basic_auth is not None:
            body.update(
                auth_method="BASIC_AUTH",
                basic_auth_user=basic_auth[0],
                basic_auth_pass=basic_auth[1],
            )
        return dict(self.request("POST", "/api/ml", json_body=body))

    def retrieve_predictions(self, project_id: int, task_ids: Sequence[int]) -> dict[str, Any]:
        """The Data Manager's "Retrieve predictions" action on these tasks (synchronous)."""
        return dict(
            self.request(
                "POST",
                "/api/dm/actions",
                params={"id": "retrieve_tasks_predictions", "project": int(project_id)},
                json_body={"selectedItems": {"all": False, "included": [int(i) for i in task_ids]}},
            )
        )

    def interactive_annotating(
        self, ml_backend_id: int, task_id: int, context: dict[str, Any]
    ) -> dict[str, Any]:
        """What the editor sends on a smart-tool click; Label Studio answers ``{"data": ...}``."""
        return dict(
            self.request(
                "POST",
                f"/api/ml/{int(ml_backend_id)}/interactive-annotating",
                json_body={"task": int(task_id), "context": context},
            )
        )

    def list_ml_backends(self, project_id: int) -> list[dict[str, Any]]:
        """The ML backends connected to a project."""
        return _listing(self.request("GET", "/api/ml", params={"project": int(project_id)}))

    def update_ml_backend(self, backend_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        """PATCH an ML backend; Label Studio checks /health and /setup again, so ``fields``
        must carry ``url`` and ``project``."""
        return dict(self.request("PATCH", f"/api/ml/{int(backend_id)}", json_body=fields))

    # -- webhooks -------------------------------------------------------------------

    def list_webhooks(self, project_id: int) -> list[dict[str, Any]]:
        """The project's webhooks (``id``, ``url``, ``headers``, ``is_active``, ``actions``...)."""
        return _listing(self.request("GET", "/api/webhooks", params={"project": int(project_id)}))

    def create_webhook(
        self,
        project_id: int,
        url: str,
        *,
        headers: dict[str, str] | None = None,
        send_payload: bool = True,
        send_for_all_actions: bool = True,
    ) -> dict[str, Any]:
        """A project webhook POSTing every event (with its payload) to ``url``."""
        body = {
            "project": int(project_id),
            "url": url,
            "headers": dict(headers or {}),
            "send_payload": send_payload,
            "send_for_all_actions": send_for_all_actions,
            "is_active": True,
        }
        return dict(self.request("POST", "/api/webhooks", json_body=body))

    def update_webhook(self, webhook_id: int, fields: dict[str, Any]) -> dict[str, Any]:
        """PATCH a webhook. Label Studio replaces its ``actions`` with the list sent (none
        when absent), so pass them along when ``send_for_all_actions`` is off."""
        return dict(self.request("PATCH", f"/api/webhooks/{int(webhook_id)}", json_body=fields))


def _requests_post_json(url: str, body: dict[str, Any], timeout_s: float) -> tuple[int, str]:
    """``engine.labelstudio.auth``'s POST over requests (its errors are ``OSError``s)."""
    import requests

    response = requests.post(url, json=body, timeout=timeout_s)
    return response.status_code, response.text


def _listing(answer: Any) -> list[dict[str, Any]]:
    """A list answer, plain or paginated (``{"results": [...]}``)."""
    rows = answer.get("results", []) if isinstance(answer, dict) else answer
    return [dict(row) for row in rows or []]
