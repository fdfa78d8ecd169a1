"""The events esimctl sends (docs/notifications.md, JSON in docs/json.md)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from esimctl.serialize import iso


@dataclass(frozen=True)
class Event:
    """One thing worth telling the user."""

    #: One of ``config_schema.EVENTS``.
    kind: str
    #: What de-duplication counts as "the same news": the kind and its subject (an eSIM,
    #: an order, an account).
    key: str
    #: A short headline: ``Tokyo: low data``.
    title: str
    #: The news in a sentence, with the figures.
    message: str
    #: What to do about it, in one line.
    action: str
    at: datetime
    account: str | None = None
    iccid: str | None = None
    label: str | None = None
    #: A standing condition (low data...) is re-sent after ``renotify`` while it holds; a
    #: one-off (a top-up bought) is sent once.
    standing: bool = True
    figures: dict[str, Any] = field(default_factory=dict)
    order: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.kind,
            "key": self.key,
            "title": self.title,
            "message": self.message,
            "action": self.action,
            "at": iso(self.at),
            "account": self.account,
            "iccid": self.iccid,
            "label": self.label,
            "figures": self.figures,
            "order": self.order,
        }
