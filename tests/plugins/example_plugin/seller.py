"""ExampleMobile's servers, simulated: a JSON file holding the seller's side of things.

The provider in ``__init__`` talks to it as it would to an HTTP API (``call(method, path,
api_key, **body)`` answers a JSON-able dict or raises ``SellerError`` with an HTTP status),
so the plugin has real translating to do: ExampleMobile counts decimal megabytes, prices in
cents, times in epoch seconds, and names its states its own way. A top-up applies at once
and stacks: its megabytes add to the allowance and its days extend the current end.
"""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

DAY = 86400


class SellerError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def new_seller(path: Path, api_key: str, *, now: float | None = None) -> Path:
    """A seller with one eSIM low on data and ending within a day, and two bundles."""
    now = time.time() if now is None else now
    state = {
        "api_key": api_key,
        "sims": [
            {
                "iccid": "8935100000000000017",
                "nickname": "Lisbon",
                "status": "live",
                "bundle": "Portugal 3 GB",
                "allowance_mb": 3000,
                "used_mb": 2550,
                "valid_until": int(now + DAY),
                "countries": ["PT"],
            }
        ],
        "bundles": [
            {
                "code": "em-1gb-7d",
                "title": "Portugal 1 GB · 7 days",
                "mb": 1000,
                "days": 7,
                "cents": 450,
                "currency": "EUR",
                "countries": ["PT"],
            },
            {
                "code": "em-3gb-30d",
                "title": "Portugal 3 GB · 30 days",
                "mb": 3000,
                "days": 30,
                "cents": 1200,
                "currency": "EUR",
                "countries": ["PT"],
            },
        ],
        "purchases": [],
        "wallet_cents": 5000,
    }
    path.write_text(json.dumps(state, indent=1), encoding="utf-8")
    return path


def load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def call(path: Path, method: str, route: str, api_key: str, **body: Any) -> dict[str, Any]:
    try:
        state = load(path)
    except OSError as exc:
        raise SellerError(503, f"seller unavailable ({exc.strerror})") from None
    if api_key != state["api_key"]:
        raise SellerError(401, "bad api key")
    sims = {s["iccid"]: s for s in state["sims"]}
    if (method, route) == ("GET", "/sims"):
        return {"sims": state["sims"]}
    if (method, route) == ("GET", "/bundles"):
        sim = sims.get(body.get("iccid", ""))
        if sim is None:
            raise SellerError(404, "no such sim")
        ok = [b for b in state["bundles"] if set(b["countries"]) & set(sim["countries"])]
        return {"bundles": ok}
    if (method, route) == ("GET", "/purchases"):
        ref = body.get("client_ref")
        rows = [p for p in state["purchases"] if ref is None or p["client_ref"] == ref]
        return {"purchases": rows}
    if (method, route) == ("GET", "/wallet"):
        return {"cents": state["wallet_cents"], "currency": "EUR"}
    if (method, route) == ("POST", "/purchases"):
        known = [p for p in state["purchases"] if p["client_ref"] == body["client_ref"]]
        if known:  # the same client reference is the same purchase
            return known[0]
        sim = sims.get(body["iccid"])
        bundle = next((b for b in state["bundles"] if b["code"] == body["bundle"]), None)
        if sim is None or bundle is None:
            raise SellerError(404, "no such sim or bundle")
        if state["wallet_cents"] < bundle["cents"]:
            raise SellerError(402, "wallet too low")
        now = int(time.time())
        state["wallet_cents"] -= bundle["cents"]
        sim["allowance_mb"] += bundle["mb"]
        sim["valid_until"] = max(sim["valid_until"], now) + bundle["days"] * DAY
        sim["bundle"] = bundle["title"]
        purchase = {
            "purchase_id": "EM-" + uuid.uuid4().hex[:8].upper(),
            "iccid": sim["iccid"],
            "bundle": bundle["code"],
            "title": bundle["title"],
            "cents": bundle["cents"],
            "currency": bundle["currency"],
            "made_at": now,
            "status": "delivered",
            "client_ref": body["client_ref"],
        }
        state["purchases"].insert(0, purchase)
        path.write_text(json.dumps(state, indent=1), encoding="utf-8")
        return purchase
    raise SellerError(404, f"no route {method} {route}")
