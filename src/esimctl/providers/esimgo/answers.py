"""eSIM Go's answers read into esimctl's model: field names, units, states, shapes.

Pure functions of the JSON, no requests: ``docs/providers/esimgo.md`` ("What the figures
mean", "What esimctl refuses to believe" and the disagreements) says why each is read so.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from esimctl.models import Activation, Esim, EsimState, Order, OrderState, Package, Plan
from esimctl.providers.kit.units import to_bytes, to_money, unit_factor
from esimctl.providers.kit.values import as_list, parse_time, records, to_bool, to_decimal, to_int

MB = 1_000_000  # eSIM Go counts decimal units

APPLIED_STATES = ("queued", "active", "depleted", "expired", "lapsed")  # reached the eSIM
USED_STATES = ("depleted", "expired", "revoked", "lapsed")
BUNDLE_STATES = frozenset({"processing", "queued", "active", *USED_STATES})  # documented
PLAIN_ESIM_STATES = frozenset({"", "active"})  # the eSIM's own states that defer to bundles

_DAYS_IN_TEXT = re.compile(r"(\d+)\s*days?\b", re.IGNORECASE)
_DAYS_IN_NAME = re.compile(r"_(\d+)D_", re.IGNORECASE)
_UNLIMITED_NAME = re.compile(r"_UL[EP]?_", re.IGNORECASE)
_NOT_ESIM_ITEMS = {"topup", "autotopup", "apitopup"}  # money into the organisation balance


# -- reading answers -------------------------------------------------------------------------


def _bytes(value: Any, unit: Any = "MB") -> int | None:
    """Decimal units (an unknown unit is MB), exactly: 1.5 MB is 1,500,000 bytes."""
    u = str(unit) if unit_factor(str(unit), 1000) else "MB"
    return to_bytes(value, u, base=1000, rounding="exact", max_bytes=None)


def _inner(body: Any, keys: Sequence[str]) -> Any:
    """The list wrapped under one of ``keys``, or ``body`` itself (bare or wrapped)."""
    if isinstance(body, dict):
        return next((body[k] for k in keys if isinstance(body.get(k), list)), None)
    return body


def unwrap(body: Any, *keys: str) -> list[dict[str, Any]]:
    """The records of a list, bare or wrapped under one of ``keys``; lenient."""
    return [x for x in as_list(_inner(body, keys)) if isinstance(x, dict)]


def strict_records(body: Any, *keys: str) -> list[dict[str, Any]] | None:
    """Like ``unwrap``, but None for an answer of no documented shape (``{}``, ``null``,
    ``{"esims": null}``, non-objects): it says nothing about what the account holds."""
    return records(_inner(body, keys))


def bundle_countries(raw: Any) -> tuple[str, ...]:
    out = []
    for c in as_list(raw):
        iso = c.get("iso") if isinstance(c, dict) else c
        if isinstance(iso, str) and iso.strip():
            out.append(iso.strip().upper())
    return tuple(dict.fromkeys(out))


def _days_of(name: str | None, description: str | None) -> int | None:
    """A bundle's validity from its description ("…, 7 Days, …") or name (``_7D_``)."""
    for rx, text in ((_DAYS_IN_TEXT, description), (_DAYS_IN_NAME, name)):
        m = rx.search(text or "")
        if m:
            return int(m.group(1))
    return None


def _data_allowance(allowances: Any) -> dict[str, Any] | None:
    for al in as_list(allowances):
        if isinstance(al, dict) and str(al.get("type", "DATA")).upper() == "DATA":
            return al
    return None


# -- what the figures mean: assignments and eSIMs --------------------------------------------


@dataclass(frozen=True)
class Assignment:
    """One bundle applied to an eSIM, as ``GET /esims/{iccid}/bundles`` reports it."""

    name: str
    description: str | None
    id: str | None
    reference: str | None
    state: str
    initial: int | None
    remaining: int | None  # as given, even negative: the plausibility checks judge it
    unlimited: bool
    assigned_at: datetime | None
    start: datetime | None
    end: datetime | None

    @property
    def label(self) -> str:
        return self.description or self.name


def _assignment(name: str, description: str | None, a: dict[str, Any]) -> Assignment:
    data = _data_allowance(a.get("allowances"))
    initial, remaining = to_int(a.get("initialQuantity")), to_int(a.get("remainingQuantity"))
    if data is not None:  # MB in the list schema, BYTES in the single-assignment one
        unit = data.get("unit", "MB")
        if initial is None:
            initial = _bytes(data.get("initialAmount"), unit)
        if remaining is None:
            remaining = _bytes(data.get("remainingAmount"), unit)
    return Assignment(
        name=name,
        description=description,
        id=None if a.get("id") is None else str(a.get("id")),
        reference=a.get("assignmentReference") or None,
        state=str(a.get("bundleState") or "unknown").strip().lower(),
        initial=initial,
        remaining=remaining,
        unlimited=bool(a.get("unlimited")) or bool(data and data.get("unlimited")),
        assigned_at=parse_time(a.get("assignmentDateTime")),
        start=parse_time(a.get("startTime")),
        end=parse_time(a.get("endTime")),
    )


def parse_assignments(body: Any, bundle_name: str | None = None) -> list[Assignment]:
    """``{"bundles": [{name, description, assignments}]}`` (or one bundle's
    ``{"assignments": [...]}``) flattened into assignments."""
    bundles = unwrap(body, "bundles")
    if not bundles and isinstance(body, dict) and "assignments" in body:
        bundles = [{"name": bundle_name or body.get("name"), **body}]
    return [
        _assignment(str(b.get("name") or bundle_name or ""), b.get("description") or None, a)
        for b in bundles
        for a in as_list(b.get("assignments"))
        if isinstance(a, dict)
    ]


def strict_assignments(body: Any) -> list[Assignment] | None:
    """``parse_assignments`` for an answer that must be understood: None unless it is a
    list of bundles (bare or under ``bundles``) or one bundle's ``assignments``."""
    if strict_records(body, "bundles") is None and not (
        isinstance(body, dict) and isinstance(body.get("assignments"), list)
    ):
        return None
    return parse_assignments(body)


def _sort_key(a: Assignment) -> datetime:
    return a.assigned_at or a.start or datetime.min.replace(tzinfo=UTC)


def esim_from(
    summary: dict[str, Any],
    assignments: Sequence[Assignment],
    *,
    account: str,
    provider: str,
    now: datetime,
) -> Esim:
    """One eSIM from its list/detail record and its assignments."""

    def in_state(*states: str) -> list[Assignment]:
        return sorted((a for a in assignments if a.state in states), key=_sort_key)

    actives, queued, processing = in_state("active"), in_state("queued"), in_state("processing")
    used = sorted(in_state(*USED_STATES), key=lambda a: a.end or _sort_key(a), reverse=True)
    odd = [a for a in assignments if a.state not in BUNDLE_STATES]  # says nothing: unknown
    live = actives + queued
    total: int | None = None
    remaining: int | None = None
    expires: datetime | None = None
    current: Assignment | None = None
    unlimited = False
    if live:
        current = live[0]
        unlimited = any(a.unlimited for a in live)
        if not unlimited and all(a.initial is not None and a.remaining is not None for a in live):
            total = sum(a.initial or 0 for a in live)
            remaining = sum(a.remaining or 0 for a in live)
        if actives:  # the active bundle's end, then each queued one's own validity in turn
            ends = [a.end for a in actives if a.end is not None]
            expires = max(ends) if ends else None
            for q in queued:
                days = _days_of(q.name, q.description)
                try:
                    expires = None if expires is None or days is None else expires + timedelta(days)
                except OverflowError:  # a validity beyond any calendar
                    expires = None
    elif used:
        current = used[0]
        unlimited = current.unlimited
        if not unlimited:
            total, remaining = current.initial, current.remaining
        expires = current.end
    elif processing:
        current = processing[0]
    elif odd:
        current = max(odd, key=_sort_key)
    plan: str | None = None
    if current is not None:
        plan = current.label
        waiting = len(queued) - (1 if current in queued else 0)
        if waiting:
            plan += f" (+{waiting} queued)"

    esim_state = str(summary.get("state") or "").strip().lower()
    if esim_state == "deactivated":
        state = EsimState.RECYCLED
    elif esim_state not in PLAIN_ESIM_STATES or (odd and not live):
        state = EsimState.UNKNOWN  # suspended, or a state eSIM Go does not document
    elif actives:
        state = EsimState.ACTIVE
    elif queued:
        state = EsimState.NOT_ACTIVE  # waits for first use
    elif used:
        last = used[0]
        depleted = last.state == "depleted" and (last.end is None or last.end > now)
        state = EsimState.DEPLETED if depleted else EsimState.EXPIRED
    else:
        state = EsimState.NOT_ACTIVE  # no bundle yet, or the first is still processing
    if state == EsimState.ACTIVE and expires is not None and expires <= now:
        state = EsimState.EXPIRED

    packages = tuple(
        Package(
            name=a.label,
            state=a.state,
            data_total_bytes=None if a.unlimited else a.initial,
            data_remaining_bytes=None if a.unlimited else a.remaining,
            unlimited=a.unlimited,
            expires_at=a.end,
        )
        for a in (*actives, *queued, *processing)
    )
    rows = [
        [a.name, a.state, a.reference or "", a.assigned_at.isoformat() if a.assigned_at else ""]
        for a in assignments
    ]
    ref = {
        "bundle": current.name if current is not None else "",
        "assignments": json.dumps(rows, separators=(",", ":")),  # read by is_applied
    }
    if esim_state:
        ref["esim_state"] = esim_state
    label = summary.get("customerRef")
    return Esim(
        account=account,
        provider=provider,
        iccid=str(summary.get("iccid") or ""),
        state=state,
        plan=plan,
        label=label if isinstance(label, str) and label.strip() else None,
        data_total_bytes=None if unlimited else total,
        data_remaining_bytes=None if unlimited else remaining,
        unlimited=unlimited,
        expires_at=expires,
        as_of=now,
        packages=packages,
        unit_base=1000,
        ref=ref,
    )


def bundle_applied(
    assignments: str | None, *, order_reference: str, bundle: str | None, since: datetime
) -> bool:
    """Whether a bought bundle has left *processing*, from an eSIM's ``ref["assignments"]``
    (as ``esim_from`` writes it): the assignment naming the order (its reference + ``-0``),
    else a bundle of that name assigned since ``since``."""
    try:
        rows = json.loads(assignments or "[]")
    except ValueError:
        rows = []
    mine = [
        r
        for r in rows
        if order_reference and len(r) > 2 and r[2] and str(r[2]).startswith(order_reference)
    ]
    if mine:
        return any(r[1] in APPLIED_STATES for r in mine)
    for r in rows:
        if len(r) < 4 or r[0] != bundle or r[1] not in APPLIED_STATES:
            continue
        assigned = parse_time(r[3])
        if assigned is not None and assigned >= since:
            return True
    return False


# -- the catalogue ---------------------------------------------------------------------------


def plan_from(
    bundle: dict[str, Any], *, currency: str, account: str, provider: str, kind: str
) -> Plan | None:
    """A catalogue bundle as a plan; None for a bundle without data (voice/SMS only)."""
    name = bundle.get("name")
    if not isinstance(name, str) or not name:
        return None
    data = _data_allowance(bundle.get("allowances"))
    amount = to_decimal(bundle.get("dataAmount"))  # MB, possibly fractional
    unlimited = bool(bundle.get("unlimited")) or bool(data and data.get("unlimited"))
    if amount == -1 or (not amount and _UNLIMITED_NAME.search(name)):
        unlimited = True  # dataAmount 0 or -1 by source; names say UL, ULE or ULP
    data_bytes: int | None = None
    if not unlimited:
        allowance = to_decimal(data.get("amount")) if data is not None else None
        if amount is not None and amount > 0:
            data_bytes = _bytes(amount)
        elif data is not None and allowance is not None and allowance > 0:
            data_bytes = _bytes(allowance, data.get("unit", "MB"))
        else:
            return None
    description = bundle.get("description")
    return Plan(
        id=name,
        account=account,
        provider=provider,
        name=description if isinstance(description, str) and description else name,
        kind=kind,
        data_bytes=data_bytes,
        unlimited=unlimited,
        validity_days=to_int(bundle.get("duration")) or _days_of(name, description),
        price=to_money(bundle.get("price"), currency),
        countries=bundle_countries(bundle.get("countries")),
        stacking="queues" if kind == "topup" else None,
        unit_base=1000,
    )


def bundle_from(body: Any) -> dict[str, Any] | None:
    """``GET /catalogue/bundle/{name}``: the bundle, bare or the first under ``bundles``."""
    if isinstance(body, dict) and isinstance(body.get("bundles"), list):
        return next(iter(unwrap(body, "bundles")), None)
    return body if isinstance(body, dict) else None


def bundle_coverage(name: str, bundle: dict[str, Any] | None) -> tuple[str, ...]:
    """The countries a bundle covers: its ``countries``, else the one in its name
    (``esim_1GB_7D_PT_V2``)."""
    covers = bundle_countries(bundle.get("countries")) if bundle else ()
    if not covers:
        covers = tuple(p.upper() for p in name.split("_")[3:4] if len(p) == 2 and p.isalpha())
    return covers


def compatible_from(body: Any) -> bool:
    """``GET /esims/{iccid}/compatible/{bundle}``: ``{"compatible": true}`` (any case of the
    key, a boolean or its text) or a bare ``true``."""
    if isinstance(body, dict):
        value = body.get("compatible", body.get("Compatible"))
        return to_bool(value) is True if isinstance(value, str) else bool(value)
    return body is True


# -- the organisation ------------------------------------------------------------------------


def organisation_from(body: Any) -> dict[str, Any]:
    """``GET /organisation``, one object or wrapped in ``organisations``: only the name,
    currency and balance (and test credit), since the answer also carries the API key."""
    if isinstance(body, dict) and isinstance(body.get("organisations"), list):
        orgs = unwrap(body, "organisations")
        body = orgs[0] if orgs else {}
    org = body if isinstance(body, dict) else {}
    return {k: org.get(k) for k in ("name", "currency", "balance", "testCredit")}


# -- orders ----------------------------------------------------------------------------------


def _one_order(body: Any) -> bool:
    """A single order object (the v2.4 client's answer), not a list of them."""
    return (
        isinstance(body, dict)
        and "orders" not in body
        and ("orderReference" in body or "order" in body)
    )


def _created(raw: dict[str, Any]) -> datetime | None:
    return parse_time(raw.get("createdDate")) or parse_time(raw.get("createDate"))


def order_records(body: Any) -> list[dict[str, Any]]:
    """The order list bare (v2.5), wrapped in ``orders``, or one order (v2.4); lenient."""
    return [body] if _one_order(body) else unwrap(body, "orders", "Orders")


def strict_order_records(body: Any, *, complete: bool = False) -> list[dict[str, Any]] | None:
    """``order_records`` for an answer that must be understood: None for any other shape;
    with ``complete``, also unless every order has its reference, a date and its lines."""
    rows = [body] if _one_order(body) else strict_records(body, "orders", "Orders")
    if rows is not None and complete:
        for r in rows:
            lines = r.get("order", r.get("Order"))
            if not r.get("orderReference") or _created(r) is None or not isinstance(lines, list):
                return None
    return rows


def order_state(status: Any) -> OrderState:
    s = str(status or "").strip().lower()
    if s in ("completed", "complete", "success", "successful", "done"):
        return OrderState.COMPLETED
    if s in ("failed", "failure", "cancelled", "canceled", "declined", "refunded", "error"):
        return OrderState.FAILED
    return OrderState.PENDING


def orders_from(
    raw: dict[str, Any], *, account: str, provider: str, default_currency: str | None
) -> list[Order]:
    """One order record as history rows: one per bundle line (balance top-ups left out)."""
    ref = str(raw.get("orderReference") or "")
    created = _created(raw)
    if not ref or created is None:
        return []
    currency = raw.get("currency") or default_currency
    lines = [x for x in as_list(raw.get("order") or raw.get("Order")) if isinstance(x, dict)]
    lines = [x for x in lines if str(x.get("type", "bundle")).lower() not in _NOT_ESIM_ITEMS]
    out: list[Order] = []
    for i, line in enumerate(lines):
        iccids = [str(x) for x in as_list(line.get("iccids"))] or [
            str(e["iccid"])
            for e in as_list(line.get("esims"))
            if isinstance(e, dict) and e.get("iccid")
        ]
        amount = to_decimal(line.get("subTotal"))
        if amount is None and len(lines) == 1:
            amount = to_decimal(raw.get("total"))
        out.append(
            Order(
                id=ref if len(lines) == 1 else f"{ref}:{i + 1}",
                account=account,
                provider=provider,
                iccid=iccids[0] if len(iccids) == 1 else None,
                plan_id=line.get("item"),
                plan=line.get("item"),
                price=to_money(amount, str(currency)) if currency else None,
                created_at=created,
                state=order_state(raw.get("status")),
                source="provider",
                extra={"order_reference": ref, "iccids": iccids, "type": line.get("type")},
            )
        )
    return out


# -- new eSIMs: how to install one ----------------------------------------------------------

_SCHEME = re.compile(r"^[a-z][a-z0-9+.-]*://", re.IGNORECASE)
_LPA_PART = re.compile(r"[^\s$]+")


def smdp_host(value: Any) -> str | None:
    """The SM-DP+ address as an activation code carries it (``rsp.esim-go.example``). The
    documentation gives it bare in one example and as ``http://smdp.example.com`` in
    others: a scheme and a trailing slash are dropped; anything else odd is no address."""
    if not isinstance(value, str):
        return None
    host = _SCHEME.sub("", value.strip()).rstrip("/")
    return host if _LPA_PART.fullmatch(host) and "/" not in host else None


def activation_from(record: Any) -> Activation | None:
    """How to install one eSIM from a record naming its ``matchingId`` and SM-DP+ address
    (``smdpAddress``; ``rspUrl`` in the ``Assignments`` schema): ``LPA:1$host$matchingId``,
    with ``appleInstallUrl`` where given. None when either part is missing or unusable."""
    if not isinstance(record, dict):
        return None
    host = smdp_host(record.get("smdpAddress") or record.get("rspUrl"))
    matching = record.get("matchingId")
    matching = matching.strip() if isinstance(matching, str) else ""
    if host is None or not _LPA_PART.fullmatch(matching):
        return None
    apple = record.get("appleInstallUrl")
    apple = apple.strip() if isinstance(apple, str) else ""
    return Activation(
        f"LPA:1${host}${matching}", apple_url=apple if apple.startswith("https://") else None
    )


def install_records(body: Any) -> list[dict[str, Any]] | None:
    """``GET /esims/assignments?reference=…`` as JSON: one object (the documented example,
    ``eSIMDetailsInstallResponse``), a list (the ``Assignments`` schema), or a list wrapped
    under ``esims``/``assignments``. None for an answer of no such shape."""
    if isinstance(body, dict):
        wrapped = _inner(body, ("esims", "assignments"))
        if wrapped is not None:
            return records(wrapped)
        return [body] if body.get("iccid") else None
    return records(body)


def order_installs(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The eSIMs an order record names, with their install data where it has them: the
    lines' ``esims`` (``{iccid, matchingId, smdpAddress}``: the purchase answer, and
    ``GET /orders?includeIccids=true``), else their bare ``iccids``."""
    out: list[dict[str, Any]] = []
    for line in as_list(raw.get("order") or raw.get("Order")):
        if not isinstance(line, dict):
            continue
        esims = [e for e in as_list(line.get("esims")) if isinstance(e, dict) and e.get("iccid")]
        out.extend(esims or [{"iccid": i} for i in as_list(line.get("iccids")) if i])
    return [{**e, "iccid": str(e["iccid"])} for e in out]


# -- errors ----------------------------------------------------------------------------------


def error_message(body: Any) -> str:
    """The text of an error body, ``{"message": ...}`` or a variant; "" when none."""
    if isinstance(body, dict):
        for key in ("message", "Message", "status", "error"):
            value = body.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()[:200]
    return ""
