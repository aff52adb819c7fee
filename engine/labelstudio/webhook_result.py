"""What one Label Studio webhook did (``engine.labelstudio.webhook``), as it is answered."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from engine.types import FeedbackAction


@dataclass
class WebhookResult:
    """What one webhook did. Counts are the decisions derived from the payload; ``recorded``
    says how many feedback records were new (0 for a replay)."""

    action: str
    status: str = "ok"  # ok | ignored | skipped | queued
    accepted: int = 0
    edited: int = 0
    rejected: int = 0
    skipped: int = 0
    unlinked: int = 0
    unseen: int = 0
    invalid: int = 0
    withdrawn: int = 0
    recorded: int = 0
    job_id: str | None = None
    items: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def tally(self, action: FeedbackAction) -> None:
        """Count one suggestion decision (a ``skip`` there means it was not shown)."""
        if action == "accept":
            self.accepted += 1
        elif action == "edit":
            self.edited += 1
        elif action == "reject":
            self.rejected += 1
        else:
            self.unseen += 1
