"""Domain objects to and from JSON: SPEC's contract and the ledger's cache rows.

One function per record shape, so ``status --json``, ``history --json`` and the cache
all agree on field names.
"""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from esimctl.models import (
    AfterAllowance,
    DailyAllowance,
    Esim,
    EsimState,
    Money,
    Order,
    OrderState,
    Package,
    Plan,
)


def iso(dt: datetime | None) -> str | None:
    if dt is None:
        return None
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str | None) -> datetime | None:
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def money_json(m: Money | None) -> dict[str, str] | None:
    return m.to_json() if m else None


def money_from(d: dict[str, str] | None) -> Money | None:
    return Money(Decimal(d["amount"]), d["currency"]) if d else None


def esim_json(
    e: Esim, attention: list[str], forecast: dict[str, Any] | None = None
) -> dict[str, Any]:
    """SPEC's status record of ``e``; ``forecast`` is ``Forecast.to_json()`` or None."""
    return {
        "account": e.account,
        "provider": e.provider,
        "iccid": e.iccid,
        "label": e.label,
        "state": e.state.value,
        "plan": e.plan,
        "data_total_bytes": None if e.unlimited else e.data_total_bytes,
        "data_remaining_bytes": None if e.unlimited else e.data_remaining_bytes,
        "data_used_bytes": e.data_used_bytes,
        "unlimited": e.unlimited,
        "expires_at": iso(e.expires_at),
        "as_of": iso(e.as_of),
        "attention": attention,
        "packages": [package_json(p) for p in e.packages],
        "forecast": forecast,
        **allowance_json(e.daily, e.fair_usage),
    }


def allowance_json(d: DailyAllowance | None, fair_usage: str | None) -> dict[str, Any]:
    """A plan's shape beyond its total (docs/json.md): the day's allowance, what follows
    it, when it resets, and the seller's fair-usage note."""
    return {
        "daily_allowance_bytes": d.bytes if d else None,
        "after_allowance": d.after.value if d and d.after else None,
        "reduced_speed": d.speed if d else None,
        "allowance_resets_at": iso(d.resets_at) if d else None,
        "fair_usage": fair_usage,
    }


def allowance_from(d: dict[str, Any]) -> DailyAllowance | None:
    """``allowance_json`` read back (a cache row); None for a row without one."""
    after = d.get("after_allowance")
    if d.get("daily_allowance_bytes") is None and after is None:
        return None
    return DailyAllowance(
        bytes=d.get("daily_allowance_bytes"),
        after=AfterAllowance(after) if after else None,
        speed=d.get("reduced_speed"),
        resets_at=parse_iso(d.get("allowance_resets_at")),
    )


def package_json(p: Package) -> dict[str, Any]:
    return {
        "name": p.name,
        "state": p.state,
        "data_total_bytes": p.data_total_bytes,
        "data_remaining_bytes": p.data_remaining_bytes,
        "unlimited": p.unlimited,
        "expires_at": iso(p.expires_at),
    }


def esim_to_cache(e: Esim) -> dict[str, Any]:
    d = esim_json(e, [])
    d["data_total_bytes"] = e.data_total_bytes
    d["data_remaining_bytes"] = e.data_remaining_bytes
    d["unit_base"] = e.unit_base
    d["ref"] = e.ref
    return d


def esim_from_cache(d: dict[str, Any]) -> Esim:
    return Esim(
        account=d["account"],
        provider=d["provider"],
        iccid=d["iccid"],
        state=EsimState(d["state"]),
        plan=d.get("plan"),
        label=d.get("label"),
        data_total_bytes=d.get("data_total_bytes"),
        data_remaining_bytes=d.get("data_remaining_bytes"),
        unlimited=bool(d.get("unlimited")),
        expires_at=parse_iso(d.get("expires_at")),
        as_of=parse_iso(d.get("as_of")),
        packages=tuple(
            Package(
                name=p.get("name"),
                state=p["state"],
                data_total_bytes=p.get("data_total_bytes"),
                data_remaining_bytes=p.get("data_remaining_bytes"),
                unlimited=bool(p.get("unlimited")),
                expires_at=parse_iso(p.get("expires_at")),
            )
            for p in d.get("packages", [])
        ),
        unit_base=int(d.get("unit_base", 1024)),
        ref=dict(d.get("ref", {})),
        daily=allowance_from(d),
        fair_usage=d.get("fair_usage"),
    )


def plan_json(p: Plan) -> dict[str, Any]:
    return {
        "id": p.id,
        "account": p.account,
        "provider": p.provider,
        "name": p.name,
        "kind": p.kind,
        "data_bytes": p.data_bytes,
        "unlimited": p.unlimited,
        "validity_days": p.validity_days,
        "price": money_json(p.price),
        "countries": list(p.countries),
        "stacking": p.stacking,
        # A day pass: price, validity and data per day; bought for a number of days.
        "per_day": p.per_day,
        "days": p.days,
        **{
            k: v
            for k, v in allowance_json(p.daily, p.fair_usage).items()
            if k != "allowance_resets_at"
        },
    }


def plan_to_cache(p: Plan) -> dict[str, Any]:
    d = plan_json(p)
    d["unit_base"] = p.unit_base
    return d


def plan_from_cache(d: dict[str, Any]) -> Plan:
    return Plan(
        id=d["id"],
        account=d["account"],
        provider=d["provider"],
        name=d["name"],
        kind=d["kind"],
        data_bytes=d.get("data_bytes"),
        unlimited=bool(d.get("unlimited")),
        validity_days=d.get("validity_days"),
        price=money_from(d.get("price")),
        countries=tuple(d.get("countries", [])),
        stacking=d.get("stacking"),
        unit_base=int(d.get("unit_base", 1024)),
        per_day=bool(d.get("per_day")),
        days=d.get("days"),
        daily=allowance_from(d),
        fair_usage=d.get("fair_usage"),
    )


def order_json(o: Order) -> dict[str, Any]:
    return {
        "id": o.id,
        "account": o.account,
        "provider": o.provider,
        "iccid": o.iccid,
        "plan_id": o.plan_id,
        "plan": o.plan,
        "price": money_json(o.price),
        "created_at": iso(o.created_at),
        "state": o.state.value,
        "source": o.source,
        # What the provider said it charged, as it said it (the price above is what
        # counts against limits: the larger of listed and charged), and a charge
        # beyond a cap or budget. Local orders only; null elsewhere.
        "charged_price": o.extra.get("charged")
        if isinstance(o.extra.get("charged"), dict)
        else None,
        "over_limit": o.extra.get("over_limit") or None,
        # "new" for a new eSIM (esimctl buy), "topup" otherwise.
        "kind": "new" if o.extra.get("kind") == "new" else "topup",
    }


def _dict_or_none(value: Any) -> dict[str, Any] | None:
    return value if isinstance(value, dict) else None


def order_from_json(d: dict[str, Any]) -> Order:
    created = parse_iso(d.get("created_at"))
    assert created is not None
    return Order(
        id=d["id"],
        account=d["account"],
        provider=d["provider"],
        iccid=d.get("iccid"),
        plan_id=d.get("plan_id"),
        plan=d.get("plan"),
        price=money_from(d.get("price")),
        created_at=created,
        state=OrderState(d["state"]),
        source=d.get("source", "provider"),
    )
