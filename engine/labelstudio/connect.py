"""Connect the engine to a Label Studio project: ML backend plus an authenticated webhook.

``POST /api/ml`` registers the engine (HTTP Basic: ``basic_auth_user`` and the
API token), and Label Studio 1.23 then creates a project webhook at
``<backend url>/webhook`` **without headers** (``ml.models.create_ml_webhook``),
so every annotation event would reach our ``/webhook`` without credentials,
be refused (401) and the feedback lost. ``connect_engine`` therefore also gives
that webhook an ``Authorization: Basic ...`` header (creating the webhook when
it is missing), keeps it active with its payload, and makes sure the annotation
events reach it.

Idempotent: a second run reuses the backend registered at the same URL (its
credentials are refreshed, in case the token changed) and the same webhook.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from typing import Any, Literal

from engine.labelstudio.client import LabelStudioClient

WEBHOOK_PATH = "/webhook"
# What /webhook turns into feedback; a webhook limited to some actions must carry these.
FEEDBACK_EVENTS = (
    "ANNOTATION_CREATED",
    "ANNOTATIONS_CREATED",
    "ANNOTATION_UPDATED",
    "ANNOTATIONS_DELETED",
)
BackendAction = Literal["created", "updated"]
WebhookAction = Literal["created", "patched", "unchanged"]


@dataclass(frozen=True)
class ConnectReport:
    """What ``connect_engine`` did in Label Studio."""

    project_id: int
    engine_url: str
    backend_id: int
    backend: BackendAction
    backend_state: str
    webhook_id: int
    webhook_url: str
    webhook: WebhookAction

    def lines(self) -> list[str]:
        """One line per step, for a person."""
        return [
            f"ML backend {self.backend_id} {self.backend} for project {self.project_id}: "
            f"{self.engine_url} (state {self.backend_state}, Basic auth)",
            f"webhook {self.webhook_id} {self.webhook}: {self.webhook_url} "
            "(sends Authorization: Basic, annotation events with payload)",
        ]


def basic_auth_header(user: str, password: str) -> str:
    """The ``Authorization`` value of HTTP Basic auth (RFC 7617, UTF-8)."""
    if ":" in user:
        raise ValueError(f"a Basic auth user name cannot contain ':', got {user!r}")
    pair = f"{user}:{password}".encode()
    return "Basic " + base64.b64encode(pair).decode("ascii")


def _same_url(a: str, b: str) -> bool:
    return a.rstrip("/") == b.rstrip("/")


def connect_engine(
    client: LabelStudioClient,
    project_id: int,
    engine_url: str,
    *,
    user: str,
    token: str,
    title: str = "labelengine",
    interactive: bool = True,
) -> ConnectReport:
    """Register ``engine_url`` as the project's ML backend and authenticate its webhook.

    Raises ``ValueError`` for a bad URL or credentials and ``LabelStudioError`` when
    Label Studio refuses a step (it checks the engine's /health and /setup itself,
    so an engine it cannot reach or that refuses the credentials fails here).
    """
    if not engine_url.startswith(("http://", "https://")):
        raise ValueError(f"engine URL must start with http:// or https://, got {engine_url!r}")
    if not token:
        raise ValueError("the engine's API token is empty")
    engine_url = engine_url.rstrip("/")
    backend, backend_action = _ensure_backend(
        client,
        project_id,
        engine_url,
        user=user,
        token=token,
        title=title,
        interactive=interactive,
    )
    # Label Studio names the webhook after the backend URL as it stored it.
    webhook_url = str(backend.get("url") or engine_url).rstrip("/") + WEBHOOK_PATH
    webhook, webhook_action = _ensure_webhook(
        client, project_id, webhook_url, basic_auth_header(user, token)
    )
    return ConnectReport(
        project_id=int(project_id),
        engine_url=engine_url,
        backend_id=int(backend["id"]),
        backend=backend_action,
        backend_state=str(backend.get("readable_state") or backend.get("state") or "?"),
        webhook_id=int(webhook["id"]),
        webhook_url=webhook_url,
        webhook=webhook_action,
    )


def _ensure_backend(
    client: LabelStudioClient,
    project_id: int,
    engine_url: str,
    *,
    user: str,
    token: str,
    title: str,
    interactive: bool,
) -> tuple[dict[str, Any], BackendAction]:
    existing = [
        b
        for b in client.list_ml_backends(project_id)
        if _same_url(str(b.get("url", "")), engine_url)
    ]
    if not existing:
        backend = client.add_ml_backend(
            project_id, engine_url, title=title, basic_auth=(user, token), interactive=interactive
        )
        return backend, "created"
    fields = {
        "url": existing[0]["url"],
        "project": int(project_id),
        "title": title,
        "is_interactive": interactive,
        "auth_method": "BASIC_AUTH",
        "basic_auth_user": user,
        "basic_auth_pass": token,
    }
    return client.update_ml_backend(int(existing[0]["id"]), fields), "updated"


def _ensure_webhook(
    client: LabelStudioClient, project_id: int, url: str, authorization: str
) -> tuple[dict[str, Any], WebhookAction]:
    """The (first) webhook at ``url``, every one of them authenticated; created if none."""
    found = [w for w in client.list_webhooks(project_id) if _same_url(str(w.get("url", "")), url)]
    if not found:
        created = client.create_webhook(project_id, url, headers={"Authorization": authorization})
        return created, "created"
    results = [_authorize(client, webhook, authorization) for webhook in found]
    action: WebhookAction = "patched" if any(a == "patched" for _, a in results) else "unchanged"
    return results[0][0], action


def _authorize(
    client: LabelStudioClient, webhook: dict[str, Any], authorization: str
) -> tuple[dict[str, Any], WebhookAction]:
    """Give one webhook our ``Authorization`` header (other headers kept), its payload, and
    the annotation events when it is limited to some actions."""
    old_headers = dict(webhook.get("headers") or {})
    headers = {k: v for k, v in old_headers.items() if k.lower() != "authorization"}
    headers["Authorization"] = authorization
    actions = sorted(webhook.get("actions") or [])
    wanted = (
        actions
        if webhook.get("send_for_all_actions")
        else sorted(set(actions) | set(FEEDBACK_EVENTS))
    )
    if (
        old_headers == headers
        and webhook.get("is_active")
        and webhook.get("send_payload")
        and (wanted == actions)
    ):
        return webhook, "unchanged"
    fields = {"headers": headers, "is_active": True, "send_payload": True, "actions": wanted}
    return client.update_webhook(int(webhook["id"]), fields), "patched"
