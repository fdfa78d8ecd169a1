"""Celitech's answers read into esimctl's model: the fields and units of
docs/providers/celitech.md, as pure functions fed the documented examples in the tests.

Every date comes twice (ISO and epoch), every size twice (bytes and GB, of a unit read from
the pair), every price in cents. No "list eSIMs" resource: an eSIM is built from its rows of
``GET /v1/purchases`` (one package each), their consumption and the eSIM's profile.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from esimctl.errors import InvalidInput, ProviderError
from esimctl.models import Activation, Esim, EsimState, Money, Order, OrderState, Package, Plan
from esimctl.providers.kit.units import to_bytes, to_money
from esimctl.providers.kit.values import as_dict, parse_time, to_decimal, to_str

#: Top-up durations in days the API accepts (limited packages; 90 has its own pricing).
LIMITED_DURATIONS = (1, 2, 7, 14, 30, 90)
#: Unlimited packages (Region-3 only) accept these durations.
UNLIMITED_DURATIONS = (1, 2, 7, 14, 30)
GIB, GB = 1024**3, 1000**3
#: Text figures beyond 1e400 are junk (1E+310 cents is kept, for the validator to refuse).
MAX_EXPONENT = 400
#: The statuses Celitech documents; any other one says nothing esimctl can rely on.
PROFILE_STATES = frozenset({"RELEASED", "DOWNLOADED", "INSTALLED", "ENABLED", "DELETED", "ERROR"})
CONSUMPTION_STATES = frozenset({"ACTIVE", "NOT_ACTIVE"})

_PLAN_ID = re.compile(r"^(?:(?P<dest>[a-z0-9]+)-)?(?P<size>unl|\d+(?:\.\d+)?gb)-(?P<days>\d+)d$")

# -- fields ----------------------------------------------------------------------------------


def parse_date(iso: Any, epoch: Any = None) -> datetime | None:
    """Every date comes twice, ``startDate`` (ISO) and ``startTime`` (epoch): ISO wins."""
    return parse_time(iso) or parse_time(epoch)


def _num(value: Any) -> Decimal | None:
    return to_decimal(value, max_exponent=MAX_EXPONENT)


def upper_code(value: Any) -> str | None:
    text = to_str(value)
    return text.upper() if text else None


def money_from_cents(cents: Any, currency: str = "USD") -> Money | None:
    return to_money(cents, currency, scale=100, max_exponent=MAX_EXPONENT)


@dataclass(frozen=True)
class Size:
    """A package size: bytes as Celitech counts them, or unlimited."""

    bytes: int | None
    unlimited: bool = False
    base: int = 1024

    @property
    def gb(self) -> Decimal | None:  # what ``dataLimitInGB`` carries
        return None if self.bytes is None else Decimal(self.bytes) / Decimal(self.base**3)


def _unit_of(n_bytes: int, n_gb: Decimal | None) -> int:
    """1024 when Celitech's GB is 2**30 bytes, 1000 when it is 10**9."""
    if n_gb is not None and n_gb > 0:
        ratio = Decimal(n_bytes) / n_gb
        return 1000 if abs(ratio - GB) < abs(ratio - GIB) else 1024
    # Only bytes: sizes are multiples of half a GB, which tells the unit apart.
    return 1000 if n_bytes % (GIB // 2) != 0 and n_bytes % (GB // 2) == 0 else 1024


def parse_size(in_bytes: Any, in_gb: Any = None, base: int | None = None) -> Size:
    """``...InBytes`` (wins) and/or ``...InGB`` (of ``base``; when not given, the unit is
    read from the pair); -1 in either is unlimited."""
    b, g = _num(in_bytes), _num(in_gb)
    if -1 in (b, g):
        return Size(None, unlimited=True)
    if b is None:
        return Size(to_bytes(g, "GB", base=base or 1024, rounding="down"), base=base or 1024)
    n = to_bytes(b, "B", rounding="down")
    return Size(None) if n is None else Size(n, base=base or _unit_of(n, g))


def gb_label(size: Size) -> str:
    """``0.5``, ``1``, ``20``: the size in the provider's GB, as its app shows it."""
    gb = size.gb
    return "?" if gb is None else format(gb.quantize(Decimal("0.01")).normalize(), "f")


def package_name(destination: str | None, size: Size, days: int | None) -> str:
    amount = "Unlimited" if size.unlimited else f"{gb_label(size)} GB"
    span = "" if days is None else f" · {days} day" + ("" if days == 1 else "s")
    return f"{destination or 'Celitech'} {amount}{span}"


def plan_id_for(destination: str | None, size: Size, days: int | None) -> str:
    """``fr-3gb-30d``: what a person types after ``--plan``; it carries what a top-up sends."""
    amount = "unl" if size.unlimited else f"{gb_label(size)}gb"
    head = re.sub(r"[^a-z0-9]", "", (destination or "").lower())
    return "-".join(x for x in (head, amount, f"{days or 0}d") if x)


def parse_plan_id(plan_id: str) -> tuple[Decimal, int]:
    """(dataLimitInGB, duration in days) from a plan id; -1 GB means unlimited."""
    m = _PLAN_ID.match(plan_id.strip().lower())
    if not m or int(m.group("days")) <= 0:
        raise InvalidInput(
            f"unknown Celitech plan {plan_id!r}: "
            "use an id from 'esimctl plans ESIM', like fr-3gb-30d"
        )
    size = m.group("size")
    return (Decimal(-1) if size == "unl" else Decimal(size[:-2])), int(m.group("days"))


def parse_new_plan_id(plan_id: str) -> tuple[str, Decimal, int]:
    """(destination, dataLimitInGB, duration in days) from the id of a plan for a new
    eSIM (``fr-3gb-30d``): its head is the destination the package was listed under."""
    m = _PLAN_ID.match(plan_id.strip().lower())
    if not m or not m.group("dest"):
        raise InvalidInput(
            f"unknown Celitech plan {plan_id!r} for a new eSIM: "
            "use an id from 'esimctl plans --country CC', like fr-3gb-30d"
        )
    gb, days = parse_plan_id(plan_id)
    return m.group("dest").upper(), gb, days


def gb_wire(gb: Decimal) -> int | float:
    """``dataLimitInGB`` as the API takes it: 3, 0.5."""
    return int(gb) if gb == gb.to_integral_value() else float(gb)


def pick_duration(min_days: Any, max_days: Any, unlimited: bool) -> int | None:
    """The longest accepted duration in a package's ``minDays``..``maxDays`` price bracket
    (every duration in it costs the same)."""
    lo, hi = _num(min_days), _num(max_days)
    allowed = UNLIMITED_DURATIONS if unlimited else LIMITED_DURATIONS
    fits = [d for d in allowed if (lo is None or d >= lo) and (hi is None or d <= hi)]
    return max(fits) if fits else None


@dataclass(frozen=True)
class Purchase:
    """One row of ``GET /v1/purchases``: a first purchase or a top-up of one eSIM."""

    id: str
    iccid: str | None
    created: datetime | None
    start: datetime | None
    end: datetime | None
    days: int | None
    size: Size
    destination: str | None  # ISO3 (or whatever the API calls the destination)
    destination_iso2: str | None
    destination_name: str | None
    price: Money | None
    reference: str | None
    purchase_type: str | None
    source: str | None

    @property
    def name(self) -> str:
        return package_name(self.destination_name or self.destination, self.size, self.days)

    @property
    def plan_id(self) -> str:
        return plan_id_for(self.destination_iso2 or self.destination, self.size, self.days)


def parse_purchase(d: dict[str, Any], currency: str = "USD") -> Purchase | None:
    """A purchase row; None for a row without an id (nothing can be done with it)."""
    pid, pkg, duration = to_str(d.get("id")), as_dict(d.get("package")), _num(d.get("duration"))
    if pid is None:
        return None
    start = parse_date(d.get("startDate"), d.get("startTime"))
    end = parse_date(d.get("endDate"), d.get("endTime"))
    days = None if duration is None else int(duration)
    if days is None and start is not None and end is not None and end > start:
        days = max(1, round((end - start).total_seconds() / 86400))
    return Purchase(
        id=pid,
        iccid=to_str(as_dict(d.get("esim")).get("iccid")),
        created=parse_date(d.get("createdDate"), d.get("createdAt")),
        start=start,
        end=end,
        days=days,
        size=parse_size(pkg.get("dataLimitInBytes"), pkg.get("dataLimitInGB")),
        destination=to_str(pkg.get("destination")),
        destination_iso2=to_str(pkg.get("destinationISO2")),
        destination_name=to_str(pkg.get("destinationName")),
        price=money_from_cents(pkg.get("priceInCents"), currency),
        reference=to_str(d.get("referenceId")),
        purchase_type=to_str(d.get("purchaseType")),
        source=to_str(d.get("source")),
    )


@dataclass(frozen=True)
class Consumption:
    remaining: int | None
    unlimited: bool
    status: str | None  # ACTIVE | NOT_ACTIVE


def parse_consumption(d: Any, base: int) -> Consumption:
    """``/purchases/{id}/consumption``; remaining data is kept as given, never clamped to 0."""
    d = as_dict(d)
    left = parse_size(d.get("dataUsageRemainingInBytes"), d.get("dataUsageRemainingInGB"), base)
    return Consumption(left.bytes, left.unlimited, upper_code(d.get("status")))


@dataclass(frozen=True)
class Profile:
    iccid: str | None
    status: str | None  # RELEASED, DOWNLOADED, INSTALLED, ENABLED, DELETED, ERROR
    connectivity: str | None  # ACTIVE | NOT_ACTIVE
    topup_flag: bool | None

    @property
    def topup_allowed(self) -> bool:
        """``isTopUpAllowed`` when sent; else the 2025 rule (``ENABLED``/``INSTALLED``)."""
        flag = self.topup_flag
        return flag if flag is not None else self.status in ("ENABLED", "INSTALLED")


def parse_profile(body: Any) -> Profile:
    d = as_dict(body).get("esim")
    if not isinstance(d, dict):
        raise ProviderError("Celitech sent an eSIM answer without 'esim'")
    flag = d.get("isTopUpAllowed")
    status, conn = upper_code(d.get("status")), upper_code(d.get("connectivityStatus"))
    return Profile(to_str(d.get("iccid")), status, conn, flag if isinstance(flag, bool) else None)


# -- a new eSIM ---------------------------------------------------------------------------------

_LPA = re.compile(r"LPA:1\$[^$\s]+\$\S+", re.IGNORECASE)
_MATCHING_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$")
_HOST = re.compile(r"^[A-Za-z0-9.-]{1,253}(:\d{1,5})?$")


def new_purchase(answer: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``POST /v1/purchases/v2``: (purchase, profile) of the one eSIM bought. The SDKs read
    an array, one item per eSIM of ``quantity``; a single object is read the same way."""
    item = answer[0] if isinstance(answer, list) and answer else answer
    d = as_dict(item)
    return as_dict(d.get("purchase")), as_dict(d.get("profile"))


def activation_from(profile: Any) -> Activation | None:
    """How to install an eSIM from a profile (the purchase answer's ``profile``, or
    ``GET /v1/esim``'s ``esim``). The LPA string is ``manualActivationCode`` (current docs;
    ``activationCode`` is then a QR image in base64) or ``activationCode`` (the 2025-03
    model, without ``manualActivationCode``); a bare matching id goes with ``smdpAddress``.
    A QR image is never taken for the code. The code is secret-like: never logged."""
    d = as_dict(profile)
    manual, code = to_str(d.get("manualActivationCode")), to_str(d.get("activationCode"))
    smdp = to_str(d.get("smdpAddress"))
    lpa = next((c for c in (manual, code) if c and _LPA.fullmatch(c)), None)
    if lpa is None and manual and smdp and _MATCHING_ID.match(manual) and _HOST.match(smdp):
        lpa = f"LPA:1${smdp}${manual}"
    if lpa is None:
        return None
    apple = to_str(d.get("iosActivationLink"))
    return Activation(lpa, apple_url=apple if apple and apple.startswith("https://") else None)


# -- an eSIM from its purchases ---------------------------------------------------------------


def _package_state(p: Purchase, c: Consumption | None, now: datetime) -> str:
    if c is not None and not (c.unlimited or p.size.unlimited) and c.remaining == 0:
        return "depleted"
    if c is not None and c.status is not None and c.status not in CONSUMPTION_STATES:
        return "unknown"
    if c is not None and c.status == "ACTIVE":
        return "active"
    if p.start is not None and p.start > now:
        return "queued"
    return "unknown" if c is None else "not_active"


def _sum(figures: list[int | None]) -> int | None:
    return None if None in figures else sum(f for f in figures if f is not None)


def build_esim(
    *,
    account: str,
    provider: str,
    iccid: str,
    purchases: list[Purchase],
    consumptions: dict[str, Consumption],
    profile: Profile | None,
    now: datetime,
) -> Esim:
    """One eSIM: each purchase is a package; the packages that have not ended add up."""
    ordered = sorted(purchases, key=lambda p: (p.created or p.start or now, p.id))
    latest = ordered[-1]
    ref = {
        "purchase_ids": ",".join(p.id for p in ordered),
        "destination": latest.destination or latest.destination_iso2 or "",
        "destination_name": latest.destination_name or "",
    }
    if latest.destination_iso2:
        ref["countries"] = latest.destination_iso2
    if profile is not None:
        ref["profile_status"] = profile.status or ""
        ref["topup_allowed"] = "true" if profile.topup_allowed else "false"
    common: dict[str, Any] = {"account": account, "provider": provider, "iccid": iccid}
    common |= {"as_of": now, "ref": ref, "unit_base": latest.size.base}
    live = [p for p in ordered if p.end is None or p.end > now]
    if not live:  # every package has ended: the data that was left cannot be used any more
        return Esim(
            **common,
            state=EsimState.EXPIRED,
            plan=latest.name,
            data_total_bytes=None if latest.size.unlimited else latest.size.bytes,
            unlimited=latest.size.unlimited,
            expires_at=max((p.end for p in ordered if p.end), default=None),
        )
    packages: list[Package] = []
    for p in live:
        c = consumptions.get(p.id)
        unl = p.size.unlimited or (c is not None and c.unlimited)
        packages.append(
            Package(
                name=p.name,
                state=_package_state(p, c, now),
                data_total_bytes=None if unl else p.size.bytes,
                data_remaining_bytes=None if c is None or unl else c.remaining,
                unlimited=unl,
                expires_at=p.end,
            )
        )
    states = [k.state for k in packages]
    unlimited = any(k.unlimited for k in packages)
    remaining = _sum([k.data_remaining_bytes for k in packages])
    current = next((p for p, s in zip(live, states, strict=True) if s == "active"), live[-1])
    started = any(s in ("active", "depleted") for s in states) or any(
        p.start is not None and p.start <= now for p in live
    )
    # A status the docs do not list (SUSPENDED, ...) says nothing: never "active".
    odd = (profile is not None and profile.status not in (None, *PROFILE_STATES)) or any(
        c is not None and c.status not in (None, *CONSUMPTION_STATES)
        for c in (consumptions.get(p.id) for p in live)
    )
    if profile is not None and profile.status == "DELETED":
        state = EsimState.RECYCLED
    elif (profile is not None and profile.status == "ERROR") or odd:
        state = EsimState.UNKNOWN
    elif not started:
        state = EsimState.NOT_ACTIVE
    elif unlimited or remaining is None or remaining > 0:
        state = EsimState.ACTIVE
    else:
        state = EsimState.DEPLETED
    return Esim(
        **common,
        state=state,
        plan=current.name,
        data_total_bytes=None if unlimited else _sum([p.size.bytes for p in live]),
        data_remaining_bytes=None if unlimited else remaining,
        unlimited=unlimited,
        expires_at=max((p.end for p in live if p.end), default=None),
        packages=tuple(packages),
    )


# -- plans and orders --------------------------------------------------------------------------


def plans_from_packages(
    rows: list[dict[str, Any]],
    *,
    account: str,
    provider: str,
    kind: str,
    currency: str,
    names: dict[str, str],
    countries: tuple[str, ...] = (),
) -> list[Plan]:
    """Plans from ``GET /v1/packages`` rows: one per price bracket, at its longest duration."""
    best: dict[str, Plan] = {}
    for row in rows:
        size = parse_size(row.get("dataLimitInBytes"), row.get("dataLimitInGB"))
        days = pick_duration(row.get("minDays"), row.get("maxDays"), size.unlimited)
        if (size.bytes is None and not size.unlimited) or days is None:
            continue
        iso2, iso3 = to_str(row.get("destinationISO2")), to_str(row.get("destination"))
        code = iso2 or iso3
        name = names.get(iso3 or "") or names.get(iso2 or "") or code
        plan = Plan(
            id=plan_id_for(code, size, days),
            account=account,
            provider=provider,
            name=package_name(name, size, days),
            kind=kind,
            data_bytes=size.bytes,
            unlimited=size.unlimited,
            validity_days=days,
            price=money_from_cents(row.get("priceInCents"), currency),
            countries=countries or tuple(c for c in (iso2,) if c),
            stacking=None,  # not documented
            unit_base=size.base,
        )
        old = best.get(plan.id)
        if old is None or (plan.price and old.price and plan.price.amount < old.price.amount):
            best[plan.id] = plan
    return sorted(best.values(), key=lambda p: (p.price.amount if p.price else Decimal(0), p.id))


def order_from_purchase(p: Purchase, *, account: str, provider: str, now: datetime) -> Order:
    return Order(
        id=p.id,
        account=account,
        provider=provider,
        iccid=p.iccid,
        plan_id=p.plan_id,
        plan=p.name,
        price=p.price,
        created_at=p.created or p.start or now,
        state=OrderState.COMPLETED,  # the purchase list holds successful purchases only
        source="provider",
        reference=p.reference,
        extra={k: v for k, v in (("purchase_type", p.purchase_type), ("channel", p.source)) if v},
    )


# -- error bodies ------------------------------------------------------------------------------

#: An error message that speaks of money. "credits" but not "credentials": a refused key
#: must not read as an empty wallet.
BALANCE_MESSAGE = re.compile(r"\bbalance\b|insufficient|\bfunds?\b|\bcredits?\b", re.IGNORECASE)
NOT_FOUND_MESSAGE = re.compile(
    r"not found|does not exist|unknown (iccid|esim|purchase)", re.IGNORECASE
)


def error_message(body: Any) -> str | None:
    """The message of an error body (``message``, OAuth's ``error_description``, ...), on
    one line and not too long."""
    for key in ("message", "error_description", "error", "Message"):
        value = as_dict(body).get(key)
        if isinstance(value, str) and value.strip():
            return re.sub(r"\s+", " ", value).strip()[:200]
    return None
