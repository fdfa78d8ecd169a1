"""What eSIM Access's answers mean in esimctl's model: the envelope and its error codes,
the units of prices and sizes, eSIM states, packages, eSIMs, usage and orders.

Pure functions and small dataclasses, no I/O: the "What each figure means" part of
``docs/providers/esimaccess.md`` in code. Requests and their flow are in ``provider.py``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from esimctl.errors import (
    AuthRejected,
    EsimctlError,
    InsufficientBalance,
    InvalidInput,
    LimitRefused,
    NotFound,
    ProviderError,
    RateLimited,
    TemporaryFailure,
)
from esimctl.models import (
    Activation,
    AfterAllowance,
    DailyAllowance,
    Esim,
    EsimState,
    Money,
    Order,
    OrderState,
    Package,
    Plan,
    split_days,
    truthful_state,
)
from esimctl.providers.kit.allowance import speed_in
from esimctl.providers.kit.units import to_money
from esimctl.providers.kit.values import parse_time, to_bool, to_int

PROVIDER_ID = "esimaccess"
CURRENCY = "USD"
#: Prices and the balance are integers in 1/10,000 of the currency.
PRICE_SCALE = 10_000
#: ``transactionId`` takes at most 50 characters.
MAX_TRANSACTION_ID = 50
AUTH_CODES = frozenset({"000101", "000102", "101003", "401001"})
UNKNOWN_PLAN_CODES = frozenset({"310201", "310211", "310241", "310243", "310251"})
#: "Missing parameter": the answer of an ``/esim/query`` that wants a filter after all.
MISSING_PARAMETER_CODES = ("000105", "000106")
#: "Profile is being downloaded for the order": ``/esim/query`` by the orderNo of a new
#: eSIM whose profile eSIM Access is still allocating.
ALLOCATING_CODE = "200010"
#: The price checks of an order: a package's ``price`` (200005), the total ``amount`` (200006).
PRICE_CODES = ("200005", "200006")

_UNIT_DAYS = {"DAY": 1, "MONTH": 30, "YEAR": 365}
_NOT_ACTIVE = {"CREATE", "PAYING", "PAID", "GETTING_RESOURCE", "GOT_RESOURCE"}
_CANCELLED = {"CANCEL", "CANCELED", "CANCELLED"}
_STATES: dict[str, EsimState] = {
    **{s: EsimState.NOT_ACTIVE for s in _NOT_ACTIVE},
    "IN_USE": EsimState.ACTIVE,
    "USED_UP": EsimState.DEPLETED,
    "UNUSED_EXPIRED": EsimState.EXPIRED,
    "USED_EXPIRED": EsimState.EXPIRED,
    **{s: EsimState.RECYCLED for s in (*_CANCELLED, "REVOKE", "REVOKED")},
    "SUSPENDED": EsimState.UNKNOWN,
}


# -- the envelope and its error codes ----------------------------------------------------------


def is_success(body: Any) -> bool:
    return isinstance(body, Mapping) and to_bool(body.get("success")) is True


def is_envelope(body: Any) -> bool:
    return isinstance(body, Mapping) and ("success" in body or "errorCode" in body)


def envelope_error(body: Mapping[str, Any]) -> tuple[str, str]:
    """(errorCode, message) of a failed answer."""
    code = body.get("errorCode")
    msg = body.get("errorMsg") or body.get("errorMessage") or ""
    return ("" if code is None else str(code).strip(), str(msg).strip())


class ApiRefused(ProviderError):
    """An eSIM Access error code with no more precise meaning for esimctl."""

    def __init__(self, message: str, *, api_code: str) -> None:
        super().__init__(message)
        self.api_code = api_code


class DuplicateTransaction(ProviderError):
    """``310402``: the transactionId was used before, so that purchase already happened."""

    code = "duplicate_transaction"


def refusal_code(content: bytes) -> str | None:
    """The ``errorCode`` of a raw answer that is a failed envelope; None for any other."""
    try:
        body = json.loads(content)
    except ValueError:
        return None
    return envelope_error(body)[0] if is_envelope(body) and not is_success(body) else None


def map_error(code: str, message: str, *, account: str | None = None) -> EsimctlError:
    said = f" ({message})" if message else ""
    fix = (
        f"run 'esimctl account add {account} --provider {PROVIDER_ID} --replace' to store new ones"
        if account
        else "check the AccessCode and SecretKey"
    )
    if code in AUTH_CODES:
        return AuthRejected(f"eSIM Access rejected the credentials [{code}]{said}; {fix}")
    if code == "101001":
        return AuthRejected(
            f"eSIM Access says the request timestamp expired [{code}]: check this computer's clock"
        )
    if code == "101002":
        return AuthRejected(f"eSIM Access blocks requests from this IP address [{code}]{said}")
    if code == "200007":
        return InsufficientBalance(
            "eSIM Access balance too low for this purchase: add funds in the eSIM Access console"
        )
    if code in UNKNOWN_PLAN_CODES:
        return InvalidInput(f"eSIM Access has no such package [{code}]{said}")
    if code in ("200005", "200006"):
        return LimitRefused(
            f"refused: the price of this package changed at eSIM Access [{code}]; nothing "
            "was bought. List the plans again ('esimctl plans ESIM') to see the new price"
        )
    if code == "200002":
        return InvalidInput(
            f"eSIM Access refuses this for the eSIM in its current state [{code}]{said}: "
            "expired, cancelled or revoked eSIMs cannot be topped up"
        )
    if code in ("310272", "310403"):
        return NotFound(f"eSIM Access: not found [{code}]{said}")
    if code == "900001":
        return RateLimited(f"eSIM Access is busy [{code}]; retry later")
    if code in ("000001", "200010"):
        return TemporaryFailure(f"eSIM Access could not answer now [{code}]{said}")
    if code == "310402":
        return DuplicateTransaction(f"eSIM Access already has this transactionId [{code}]")
    return ApiRefused(f"eSIM Access error [{code or 'unknown'}]{said}", api_code=code)


# -- values ------------------------------------------------------------------------------------


def parse_money(value: Any, currency: Any = None) -> Money | None:
    cur = currency.strip().upper() if isinstance(currency, str) and currency.strip() else CURRENCY
    return to_money(value, cur, scale=PRICE_SCALE)


def to_units(m: Money) -> str:
    """Money as the 1/10,000 integer string ``/esim/topup`` takes as ``amount``."""
    if not m.amount.is_finite():
        raise LimitRefused(f"the listed price {m.amount} is not a number; nothing was bought")
    return str(int((m.amount * PRICE_SCALE).to_integral_value()))


def api_time(dt: datetime) -> str:
    """The request time format of ``/esim/query``: ``2025-06-01T00:00+00:00``."""
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M+00:00")


def _days(duration: Any, unit: Any) -> int | None:
    n = to_int(duration)
    u = str(unit or "DAY").strip().upper()
    factor = next((f for p, f in _UNIT_DAYS.items() if u.startswith(p)), None)
    return None if n is None or factor is None else n * factor


def _countries(raw: Mapping[str, Any]) -> tuple[str, ...]:
    where = raw.get("location") or raw.get("locationCode") or ""
    codes = [c.strip().upper() for c in str(where).split(",") if c.strip()]
    if not codes:
        for loc in raw.get("locationNetworkList") or []:
            if isinstance(loc, Mapping) and loc.get("locationCode"):
                codes.append(str(loc["locationCode"]).upper())
    return tuple(dict.fromkeys(codes))


def esim_state(esim_status: Any, smdp_status: Any = None) -> EsimState:
    status = str(esim_status or "").strip().upper()
    state = _STATES.get(status, EsimState.UNKNOWN)
    if state == EsimState.UNKNOWN and not status and str(smdp_status or "").upper() == "RELEASED":
        return EsimState.NOT_ACTIVE
    return state


# -- packages (plans) --------------------------------------------------------------------------


def is_day_pass(raw: Mapping[str, Any]) -> bool:
    return to_int(raw.get("dataType")) in (2, 3, 4) or to_int(raw.get("supportTopUpType")) == 3


@dataclass(frozen=True)
class Shape:
    """What ``dataType`` (and ``fupPolicy``) say a package or an eSIM is."""

    unlimited: bool
    daily: DailyAllowance | None
    fair_usage: str | None


def shape(raw: Mapping[str, Any], volume: int | None, name: str = "") -> Shape:
    """``dataType`` 1: a total; 2: ``volume`` a day at full speed, then the ``fupPolicy``
    speed (data never runs out); 3: ``volume`` a day, then none until the next day; 4:
    unlimited every day. The speed is read from ``fupPolicy``, else from the name
    (``Georgia 1GB/Day FUP1Mbps``); where neither says one, it is unknown."""
    data_type = to_int(raw.get("dataType"))
    fup = str(raw.get("fupPolicy") or "").strip() or None
    if data_type == 2:
        speed = speed_in(fup) or speed_in(name)
        daily = DailyAllowance(volume, AfterAllowance.REDUCED_SPEED, speed)
        return Shape(True, daily, fup)
    if data_type == 3:
        return Shape(False, DailyAllowance(volume, AfterAllowance.CUT_OFF), fup)
    if data_type == 4:
        return Shape(True, None, fup)
    return Shape(volume == -1, None, None)  # -1 is "no limit"; other negatives stay


def parse_plans(raw: Mapping[str, Any], *, account: str, kind: str) -> list[Plan]:
    """One package of ``/package/list`` as a plan. A day pass (``dataType`` 2-4) is one
    plan priced per day (``per_day``); it is bought for a number of days (``periodNum``)
    with ``Plan.for_days``."""
    code = str(raw.get("packageCode") or raw.get("slug") or "").strip()
    if not code:
        return []
    name = str(raw.get("name") or raw.get("description") or code).strip()
    volume = to_int(raw.get("volume"))
    day_pass = is_day_pass(raw)
    s = shape(raw, volume, name)
    daily = s.daily
    if day_pass and daily is None and not s.unlimited and volume is not None and volume > 0:
        daily = DailyAllowance(volume)  # a day's volume; what follows it, unsaid
    return [
        Plan(
            id=code,
            account=account,
            provider=PROVIDER_ID,
            name=name,
            kind=kind,
            # A day pass's volume is a day's, never the package's.
            data_bytes=None if s.unlimited or day_pass else volume,
            unlimited=s.unlimited,
            validity_days=1 if day_pass else _days(raw.get("duration"), raw.get("durationUnit")),
            price=parse_money(raw.get("price"), raw.get("currencyCode")),
            countries=_countries(raw),
            stacking="stacks" if kind == "topup" else None,
            unit_base=1024,
            per_day=day_pass,
            daily=daily,
            fair_usage=s.fair_usage,
        )
    ]


def split_plan_id(plan_id: str) -> tuple[str, int | None]:
    """``TOPUP_JP01:7d`` → (``TOPUP_JP01``, 7); a plain code → (code, None)."""
    return split_days(plan_id)


# -- eSIMs, their usage and their orders -------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """One row of ``/esim/usage/query``."""

    used: int | None
    total: int | None
    as_of: datetime | None


def parse_usage(obj: Any) -> dict[str, Usage]:
    """``obj.esimUsageList``, or ``obj`` as a bare list."""
    rows = obj.get("esimUsageList") if isinstance(obj, Mapping) else obj
    return {
        str(r["esimTranNo"]): Usage(
            used=to_int(r.get("dataUsage")),
            total=to_int(r.get("totalData")),
            as_of=parse_time(r.get("lastUpdateTime")),
        )
        for r in rows or []
        if isinstance(r, Mapping) and r.get("esimTranNo")
    }


def package_list(raw: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """``packageList``, oldest first."""
    pkgs = [p for p in raw.get("packageList") or [] if isinstance(p, Mapping)]
    epoch = datetime.min.replace(tzinfo=UTC)
    return sorted(pkgs, key=lambda p: parse_time(p.get("createTime")) or epoch)


def _is_topup_package(p: Mapping[str, Any], index: int) -> bool:
    return index > 0 or str(p.get("packageCode") or "").upper().startswith("TOPUP_")


def _activated(raw: Mapping[str, Any], state: EsimState) -> bool:
    if parse_time(raw.get("activateTime")) is not None:
        return True
    return state in (EsimState.ACTIVE, EsimState.DEPLETED) or (
        str(raw.get("esimStatus") or "").upper() == "USED_EXPIRED"
    )


def parse_esim(
    raw: Mapping[str, Any],
    *,
    account: str,
    usage: Usage | None = None,
    fetched_at: datetime | None = None,
) -> Esim | None:
    """One entry of ``obj.esimList``; None while the profile has no ICCID yet."""
    iccid = str(raw.get("iccid") or "").strip()
    if not iccid:
        return None
    state = esim_state(raw.get("esimStatus"), raw.get("smdpStatus"))
    pkgs = package_list(raw)
    base = next((p for i, p in enumerate(pkgs) if not _is_topup_package(p, i)), None)
    base = base or (pkgs[0] if pkgs else None)
    plan = str(base.get("packageName") or base.get("packageCode") or "") if base else ""

    total = to_int(raw.get("totalVolume"))
    used = to_int(raw.get("orderUsage"))
    # A day pass (dataType 2-4): its volume is a day's, and its usage runs over the days;
    # neither is the package's figure (docs/providers/esimaccess.md, "Day passes").
    day_pass = to_int(raw.get("dataType")) in (2, 3, 4)
    per_day = (to_int(base.get("volume")) if base else None) or total
    shp = shape(raw, per_day, plan)
    unlimited = shp.unlimited or total == -1  # other negatives stay
    as_of: datetime | None = None
    if usage is not None:
        # Both figures lag: the larger one is the newer. totalVolume moves at once with a
        # top-up, so it wins over totalData.
        if usage.used is not None:
            used = max(used or 0, usage.used)
        if total is None:
            total = usage.total
        as_of = usage.as_of
    elif state == EsimState.NOT_ACTIVE:
        as_of = fetched_at  # nothing used yet: the figures are exact now
    used_unreadable = used is None and raw.get("orderUsage") not in (None, "")
    remaining = None if total is None or used_unreadable else max(total - (used or 0), 0)
    if day_pass:
        total = remaining = None
    if state == EsimState.ACTIVE and not unlimited and remaining == 0 and total:
        state = EsimState.DEPLETED

    activated = _activated(raw, state)
    expires = parse_time(raw.get("expiredTime"))
    activate_time = parse_time(raw.get("activateTime"))
    days = to_int(raw.get("totalDuration"))
    if activated and activate_time is not None and days is not None:
        # Still the (later) install deadline after activation: the plan's own end instead.
        try:
            plan_end: datetime | None = activate_time + timedelta(days=days)
        except OverflowError:  # a duration beyond any calendar: no end is known from it
            plan_end = None
        if plan_end is not None and (expires is None or expires - plan_end > timedelta(days=1)):
            expires = plan_end
    now = fetched_at or datetime.now(UTC)
    if state == EsimState.ACTIVE and expires is not None and expires <= now:
        state = EsimState.EXPIRED
    daily = shp.daily
    if daily is not None and activated and activate_time is not None:
        # The days of a pass run from its activation, as its end does.
        try:
            elapsed = max((now - activate_time) // timedelta(days=1) + 1, 1)
            resets = activate_time + timedelta(days=elapsed)
        except OverflowError:
            resets = None
        if resets is not None and (expires is None or resets < expires):
            daily = replace(daily, resets_at=resets)

    packages = tuple(
        Package(
            name=str(p.get("packageName") or p.get("packageCode") or "") or None,
            state=state.value,  # top-ups pour into one pool with the base package
            data_total_bytes=None if unlimited or day_pass else to_int(p.get("volume")),
            data_remaining_bytes=None,
            unlimited=unlimited,
        )
        for p in pkgs
    )
    ref = {
        "esimTranNo": str(raw.get("esimTranNo") or ""),
        "orderNo": str(raw.get("orderNo") or ""),
        "esimStatus": str(raw.get("esimStatus") or ""),
        "smdpStatus": str(raw.get("smdpStatus") or ""),
        "expiry": "plan_end" if activated else "install_by",
        "countries": ",".join(_countries(base)) if base else "",
        "packageCode": str(base.get("packageCode") or "") if base else "",
        "transactionIds": ",".join(str(p["transactionId"]) for p in pkgs if p.get("transactionId")),
    }
    e = Esim(
        account=account,
        provider=PROVIDER_ID,
        iccid=iccid,
        state=state,
        plan=plan or None,
        data_total_bytes=None if unlimited else total,
        data_remaining_bytes=None if unlimited else remaining,
        unlimited=unlimited,
        expires_at=expires,
        as_of=as_of,
        packages=packages,
        unit_base=1024,
        ref={k: v for k, v in ref.items() if v},
        daily=daily,
        fair_usage=shp.fair_usage,
    )
    return truthful_state(e, now)  # USED_UP on a day pass is the day's, not the pass's


def newest_per_iccid(rows: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """ICCIDs are reused: the latest allocation (created last, highest esimTranNo) of each."""

    def key(r: Mapping[str, Any]) -> tuple[datetime, str]:
        pkgs = package_list(r)
        created = parse_time(pkgs[0].get("createTime")) if pkgs else None
        return (created or datetime.min.replace(tzinfo=UTC), str(r.get("esimTranNo") or ""))

    best: dict[str, Mapping[str, Any]] = {}
    for r in rows:
        iccid = str(r.get("iccid") or "")
        if iccid and (iccid not in best or key(r) >= key(best[iccid])):
            best[iccid] = r
    return list(best.values())


def parse_orders(raw: Mapping[str, Any], *, account: str) -> list[Order]:
    """The purchases one eSIM shows: the eSIM's own order, then each top-up package."""
    iccid = str(raw.get("iccid") or "") or None
    status = str(raw.get("esimStatus") or "").upper()
    if status in _CANCELLED:
        first_state = OrderState.FAILED  # cancelled profiles are refunded
    elif status in ("CREATE", "PAYING", "PAID", "GETTING_RESOURCE"):
        first_state = OrderState.PENDING
    else:
        first_state = OrderState.COMPLETED
    order_no = str(raw.get("orderNo") or "")
    fallback_time = parse_time(raw.get("installationTime")) or parse_time(raw.get("activateTime"))
    out: list[Order] = []
    for i, p in enumerate(package_list(raw)):
        created = parse_time(p.get("createTime")) or (fallback_time if i == 0 else None)
        if created is None:
            continue
        topup = _is_topup_package(p, i)
        if topup:
            oid = str(p.get("esimTranNo") or p.get("transactionId") or f"{order_no}/{i}")
            reference = str(p.get("transactionId") or "") or None
        else:
            oid = order_no or str(raw.get("esimTranNo") or f"{iccid}/0")
            reference = str(raw.get("transactionId") or "") or None
        out.append(
            Order(
                id=oid,
                account=account,
                provider=PROVIDER_ID,
                iccid=iccid,
                plan_id=str(p.get("packageCode") or p.get("slug") or "") or None,
                plan=str(p.get("packageName") or p.get("packageCode") or "") or None,
                price=None,  # the package list carries no price; the ledger has ours
                created_at=created,
                state=OrderState.COMPLETED if topup else first_state,
                source="provider",
                reference=reference,
                extra={"kind": "topup" if topup else "esim"},
            )
        )
    return out


# -- top-ups: the reference sent, the order read back ------------------------------------------


def topup_order(
    reference: str,
    tx: str,
    iccid: str,
    plan: Plan | None,
    obj: Mapping[str, Any],
    *,
    account: str,
    created_at: datetime,
    price: Money | None = None,
    pkg: Mapping[str, Any] | None = None,
) -> Order:
    """The order of one top-up: from the ``/esim/topup`` answer ``obj`` (new totals and
    expiry) and, for one found later, the top-up's package of ``packageList``."""
    extra: dict[str, Any] = {"transactionId": tx}
    total = to_int(obj.get("totalVolume"))
    if total is not None:
        extra["total_volume"] = total
    expires = parse_time(obj.get("expiredTime"))
    if expires is not None:
        extra["expires_at"] = expires.isoformat()
    pkg = pkg or {}
    return Order(
        id=str(obj.get("topUpEsimTranNo") or pkg.get("esimTranNo") or tx),
        account=account,
        provider=PROVIDER_ID,
        iccid=str(obj.get("iccid") or iccid),
        plan_id=plan.id if plan else (str(pkg.get("packageCode") or "") or None),
        plan=plan.name if plan else (str(pkg.get("packageName") or "") or None),
        price=price,
        created_at=created_at,
        state=OrderState.COMPLETED,
        source="provider",
        reference=reference,
        extra=extra,
    )


def transaction_id(reference: str) -> str:
    """Our purchase reference as a transactionId (at most 50 characters, deterministic)."""
    ref = re.sub(r"[^A-Za-z0-9_.:-]", "-", reference)
    if len(ref) <= MAX_TRANSACTION_ID:
        return ref
    digest = hashlib.sha256(reference.encode()).hexdigest()[:16]
    return f"{ref[: MAX_TRANSACTION_ID - 17]}-{digest}"


# -- new eSIMs: the order sent, the profile allocated later ------------------------------------


def new_esim_order(
    reference: str,
    tx: str,
    order_no: str | None,
    *,
    account: str,
    plan_id: str | None,
    plan: str | None,
    price: Money | None,
    created_at: datetime,
    iccid: str | None = None,
) -> Order:
    """The order of one new eSIM (``/esim/order``): ``orderNo`` as its id (the
    transactionId while eSIM Access has not told it), pending until the eSIM shows."""
    extra: dict[str, Any] = {"kind": "new", "transactionId": tx}
    if order_no:
        extra["orderNo"] = order_no
    return Order(
        id=order_no or tx,
        account=account,
        provider=PROVIDER_ID,
        iccid=iccid,
        plan_id=plan_id,
        plan=plan,
        price=price,
        created_at=created_at,
        state=OrderState.PENDING,
        source="provider",
        reference=reference,
        extra=extra,
    )


def carries(raw: Mapping[str, Any], tx: str) -> bool:
    """Does this ``/esim/query`` record belong to the order sent with ``tx``? The record's
    own ``transactionId`` (documented), or one of its packages' (seen in live answers)."""
    if str(raw.get("transactionId") or "") == tx:
        return True
    return any(
        isinstance(p, Mapping) and str(p.get("transactionId") or "") == tx
        for p in raw.get("packageList") or []
    )


def parse_activation(raw: Mapping[str, Any]) -> Activation | None:
    """How to install the eSIM of a ``/esim/query`` record: ``ac``, the full LPA string
    (``LPA:1$<SM-DP+>$<matching id>``). ``qrCodeUrl`` and ``shortUrl`` are ignored: the
    QR code is drawn from ``ac``, and an image on eSIM Access's server is not needed."""
    ac = str(raw.get("ac") or "").strip()
    if ac and not ac.upper().startswith("LPA:") and ac.startswith("1$"):
        ac = "LPA:" + ac  # the activation code without its scheme
    if not ac.upper().startswith("LPA:1$") or len(ac.split("$")) < 3:
        return None
    apn = str(raw.get("apn") or "").strip()
    return Activation(ac, notes=f"APN: {apn}" if apn else None)
