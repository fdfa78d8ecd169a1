"""Airalo's answers read into esimctl's model: the fields and units of
``docs/providers/airalo.md``.

Pure functions of what Airalo sends: no I/O, no provider instance. Figures are MB of
1024, prices USD, times naive ``Y-m-d H:i:s`` read as UTC; states the docs do not list
are unknown, statuses they do not list no verdict.
"""

from __future__ import annotations

import contextlib
import html
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import replace
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from functools import partial
from html.parser import HTMLParser
from typing import Any
from urllib.parse import unquote, urlsplit

from esimctl.errors import (
    AuthRejected,
    EsimctlError,
    InsufficientBalance,
    InvalidInput,
    ProviderError,
    TemporaryFailure,
)
from esimctl.models import (
    Activation,
    DailyAllowance,
    Esim,
    EsimState,
    Money,
    NewEsim,
    Order,
    OrderState,
    Package,
    Plan,
    truthful_state,
)
from esimctl.providers.kit import units, values
from esimctl.providers.kit.allowance import fair_usage_terms
from esimctl.providers.kit.values import as_dict, as_list, parse_time, records

PROVIDER_ID = "airalo"
CURRENCY = "USD"  # "currency: always USD" (attribute descriptions)
#: Our purchases carry ``<reference> (<iccid>)`` in ``description``, the reference starting
#: with "esimctl" (added in front when the caller's does not).
_OUR_DESCRIPTION = re.compile(r"^(?:esimctl )?(\S+)(?: \((\d{16,22})\))?$")
#: Airalo's default top-up description is ``Topup (<iccid>)``.
_ICCID_IN_TEXT = re.compile(r"\((\d{16,22})\)")

#: No JSON number reaches beyond 1e308: text beyond 1e±400 is junk, not a size or a price
#: (1e308 itself is kept, for the validator to refuse by name).
_MAX_EXPONENT = 400
to_decimal = partial(values.to_decimal, max_exponent=_MAX_EXPONENT)
to_int = partial(values.to_int, max_exponent=_MAX_EXPONENT)
#: Figures are MB of 1024 (``3072``, ``0.5``, ``"512.5"``), as whole bytes.
to_bytes = partial(units.to_bytes, max_exponent=_MAX_EXPONENT)


def usd(value: Any, currency: Any = None) -> Money | None:
    """A price as given (a number or text), in ``currency`` or USD."""
    return units.to_money(value, str(currency or CURRENCY), max_exponent=_MAX_EXPONENT)


_USAGE_STATES = {
    "NOT_ACTIVE": EsimState.NOT_ACTIVE,
    "ACTIVE": EsimState.ACTIVE,
    "FINISHED": EsimState.DEPLETED,
    "EXPIRED": EsimState.EXPIRED,
    "RECYCLED": EsimState.RECYCLED,
    "UNKNOWN": EsimState.UNKNOWN,
}
_PACKAGE_STATES = {
    "ACTIVE": "active",
    "NOT_ACTIVE": "queued",
    "FINISHED": "depleted",
    "EXPIRED": "expired",
}  # any other status of a package is "unknown"
_ORDER_STATES = {
    "completed": OrderState.COMPLETED,
    "partially_refunded": OrderState.COMPLETED,
    "failed": OrderState.FAILED,
    "refunded": OrderState.FAILED,
}  # any other status is not a verdict: pending, never completed nor failed


# -- pages ---------------------------------------------------------------------------------


def read_page(body: Any) -> list[dict[str, Any]] | None:
    """The records of one page: ``data`` as a list of objects, or as an object keyed by
    index (``/v2/packages`` from page 2 on); None for any other shape."""
    data = as_dict(body).get("data")
    if isinstance(data, dict):
        if not data or any(to_int(k) is None for k in data):
            return None
        data = [data[k] for k in sorted(data, key=lambda k: to_int(k) or 0)]
    return records(data)


def has_next_page(body: Any, page: int) -> bool:
    """``links.next``, or ``meta.last_page`` where ``links`` is missing."""
    links = as_dict(as_dict(body).get("links"))
    if "next" in links:
        return bool(links.get("next"))
    last = to_int(as_dict(as_dict(body).get("meta")).get("last_page"))
    return last is not None and page < last


def total_of(body: Any) -> int | None:
    """The number of records of a whole list (``meta.total``), when it says one."""
    total = to_int(as_dict(as_dict(body).get("meta")).get("total"))
    return total if total is not None and total >= 0 else None


# -- plans ---------------------------------------------------------------------------------


def _says_unlimited(*texts: Any) -> bool:
    return any(isinstance(t, str) and "unlimited" in t.lower() for t in texts)


#: ``is_fair_usage_policy`` true without a ``fair_usage_policy`` text.
FAIR_USAGE_UNSAID = "a fair-usage policy applies (Airalo gives no terms)"


def fair_usage(pkg: Mapping[str, Any]) -> tuple[str | None, DailyAllowance | None]:
    """A package's fair-usage note (``fair_usage_policy``, where ``is_fair_usage_policy``
    is not false) and the daily allowance it states (``... after 2 GB per day``)."""
    text = pkg.get("fair_usage_policy")
    note = text.strip() if isinstance(text, str) and text.strip() else None
    flag = pkg.get("is_fair_usage_policy")
    if flag is False:
        return None, None
    if note is None:
        return (FAIR_USAGE_UNSAID if flag is True else None), None
    return note, fair_usage_terms(note, 1024)


def plan_price(pkg: Mapping[str, Any], pricing: Mapping[str, Any] | None = None) -> Money | None:
    """What the partner balance is charged: ``net_price``, or under discount pricing the
    retail ``price`` less ``discount_percentage``."""
    given = pkg.get("net_price")
    if given is None:
        given = as_dict(as_dict(pkg.get("prices")).get("net_price")).get(CURRENCY)
    if given is not None:
        return usd(given)  # a net price that is no number is no price, never the retail one
    retail = to_decimal(pkg.get("price"))
    if retail is None:
        return None
    p = as_dict(pricing)
    discount = to_decimal(p.get("discount_percentage"))
    if p.get("model") == "discount_pricing" and discount:
        retail = retail * (100 - discount) / 100
        # Too large to have cents: kept as given, the validator refuses it by name.
        with contextlib.suppress(ArithmeticError):
            retail = retail.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    return Money(retail, CURRENCY)


def plan_from(
    pkg: Mapping[str, Any],
    *,
    account: str,
    pricing: Mapping[str, Any] | None = None,
    kind: str | None = None,
    name: str | None = None,
    countries: tuple[str, ...] = (),
) -> Plan:
    """One package of ``/v2/sims/{iccid}/topups`` or ``/v2/packages`` as a Plan."""
    unlimited = pkg.get("is_unlimited") is True or _says_unlimited(pkg.get("data"))
    amount = to_bytes(pkg.get("amount"))
    title = str(pkg.get("title") or pkg.get("data") or pkg.get("id"))
    note, daily = fair_usage(pkg)
    return Plan(
        id=str(pkg.get("id")),
        account=account,
        provider=PROVIDER_ID,
        name=name or title,
        kind=kind or ("topup" if pkg.get("type") == "topup" else "new"),
        data_bytes=None if unlimited or not amount else amount,
        unlimited=unlimited,
        validity_days=to_int(pkg.get("day")),
        price=plan_price(pkg, pricing),
        countries=countries,
        stacking=None,  # Airalo does not say whether a top-up adds or queues
        unit_base=1024,
        daily=daily if unlimited else None,  # a day's amount of a total plan: no shape
        fair_usage=note,
    )


def topup_plans(body: Any, *, account: str) -> list[Plan] | None:
    """The packages ``/v2/sims/{iccid}/topups`` sells, priced by the answer's ``pricing``;
    None for an answer that is not the list ("sells no top-ups" is ``{"data": []}``)."""
    items = read_page(body)
    if items is None:
        return None
    pricing = as_dict(as_dict(body).get("pricing"))
    return [
        plan_from(p, account=account, pricing=pricing, kind="topup") for p in items if p.get("id")
    ]


def catalogue_plans(
    destinations: Iterable[Mapping[str, Any]],
    country: str,
    *,
    account: str,
    pricing: Mapping[str, Any] | None = None,
) -> list[Plan]:
    """The packages of ``/v2/packages``: destinations, their operators, their packages,
    each named ``Operator-Title``, for the countries the operator (or destination) names,
    priced by the answer's ``pricing`` (under discount pricing ``net_price`` is null)."""
    plans: list[Plan] = []
    for dest in destinations:
        # Local entries name their country; regional/global ones leave it empty.
        dest_cc = str(dest.get("country_code") or "").upper()
        for op in as_list(dest.get("operators")):
            if not isinstance(op, dict):
                continue
            codes = tuple(
                str(c.get("country_code")).upper()
                for c in as_list(op.get("countries"))
                if isinstance(c, dict) and c.get("country_code")
            ) or ((dest_cc,) if dest_cc else (country,))
            for pkg in as_list(op.get("packages")):
                if not isinstance(pkg, dict) or not pkg.get("id"):
                    continue
                title = str(pkg.get("title") or pkg.get("data") or pkg["id"])
                name = f"{op['title']}-{title}" if op.get("title") else title
                plans.append(
                    plan_from(pkg, account=account, pricing=pricing, name=name, countries=codes)
                )
    return plans


# -- orders --------------------------------------------------------------------------------


def description_for(reference: str, iccid: str | None = None) -> str:
    """Our reference, and the ICCID that top-up orders otherwise lose (``sims: []``); a
    new eSIM's order (no ICCID yet) carries the reference alone."""
    prefix = "" if reference.startswith("esimctl") else "esimctl "
    return f"{prefix}{reference}" + (f" ({iccid})" if iccid else "")


def reference_in(description: Any) -> tuple[str | None, str | None]:
    """Our reference and the ICCID in an order's description, where we wrote them."""
    if not isinstance(description, str):
        return None, None
    text = description.strip()
    m = _OUR_DESCRIPTION.match(text) if text.startswith("esimctl") else None
    if m:
        return m.group(1), m.group(2)
    found = _ICCID_IN_TEXT.search(description)
    return None, found.group(1) if found else None


def is_ours(item: Mapping[str, Any], reference: str, iccid: str | None) -> bool:
    """Whether an order of the list carries ``reference`` (and no other eSIM's ICCID)."""
    ref, described = reference_in(item.get("description"))
    return ref == reference and (iccid is None or described in (None, iccid))


def orders_readable(items: Iterable[Mapping[str, Any]]) -> bool:
    """Whether every order of a lookup has a description and an id to tell it by."""
    return all("description" in i and (i.get("id") or i.get("code")) for i in items)


def order_from(
    item: Mapping[str, Any],
    *,
    account: str,
    now: datetime,
    iccid: str | None = None,
    price: Money | None = None,
) -> Order:
    """One order of ``/v2/orders`` or the ``data`` of a ``/v2/orders/topups`` answer."""
    reference, described_iccid = reference_in(item.get("description"))
    sims = item.get("sims")
    sim_iccid = None
    if isinstance(sims, list) and sims and isinstance(sims[0], dict):
        sim_iccid = sims[0].get("iccid")
    status = as_dict(item.get("status")).get("slug") or item.get("status")
    state = OrderState.COMPLETED
    if status:  # none: the list holds only processed orders, and a 200 top-up is done
        state = _ORDER_STATES.get(str(status).lower(), OrderState.PENDING)
    return Order(
        id=str(item.get("code") or item.get("id")),
        account=account,
        provider=PROVIDER_ID,
        iccid=iccid or (str(sim_iccid) if sim_iccid else None) or described_iccid,
        plan_id=str(item["package_id"]) if item.get("package_id") else None,
        plan=str(item["package"]) if item.get("package") else None,
        price=price if price is not None else usd(item.get("price"), item.get("currency")),
        created_at=parse_time(item.get("created_at")) or now,
        state=state,
        source="provider",
        reference=reference,
        extra={
            "order_id": item.get("id"),
            "type": item.get("type"),
            "description": item.get("description"),
            "retail_price": str(item["price"]) if item.get("price") is not None else None,
            "status": status,
        },
    )


def charge_in(data: Mapping[str, Any]) -> Money | None:
    """The charge a top-up answer reports, as given (the purchase pipeline checks it); one
    that is no number is no price, never the retail price instead."""
    keys = ("total_amount_paid", "unit_paid_price", "net_price")
    paid = [data[k] for k in keys if data.get(k) is not None]
    if paid:
        return usd(paid[0])
    pricing = {
        "model": data.get("pricing_model"),
        "discount_percentage": data.get("discount_percentage"),
    }
    return plan_price(data, pricing)


def new_charge_in(data: Mapping[str, Any]) -> Money | None:
    """The charge a new-eSIM order answer reports: ``total_amount_paid``/``unit_paid_price``
    (discount pricing) or ``net_price``, as given; under discount pricing without them, the
    retail ``price`` less ``discount_percentage``. Under net pricing without ``net_price``
    (the documented Sandbox example) the answer does not say: None, never the retail
    ``price``, which is not what the balance is charged."""
    keys = ("total_amount_paid", "unit_paid_price", "net_price")
    paid = [data[k] for k in keys if data.get(k) is not None]
    if paid:
        return usd(paid[0])
    if data.get("pricing_model") != "discount_pricing":
        return None
    pricing = {"model": "discount_pricing", "discount_percentage": data.get("discount_percentage")}
    return plan_price({"price": data.get("price")}, pricing)


def balance_from(body: Any) -> Money | None:
    """``/v2/balance``: ``data.balances`` (an object, or a list of one), its
    ``availableBalance``."""
    balances = as_dict(as_dict(body).get("data")).get("balances")
    if isinstance(balances, list):
        balances = balances[0] if balances else {}
    avail = as_dict(as_dict(balances).get("availableBalance"))
    return usd(avail.get("amount"), avail.get("currency"))


# -- new eSIMs ------------------------------------------------------------------------------

#: ``LPA:1$<SM-DP+ address>$<matching id>`` (an optional fourth part: an OID or a flag).
_LPA = re.compile(r"LPA:1\$([^$\s]+)\$([^$\s]*)(?:\$[^\s]*)?", re.IGNORECASE)
_APPLE_HOST = "esimsetup.apple.com"
#: Installation notes longer than this are cut: they are read on a terminal.
MAX_NOTES = 2000


def _lpa(text: Any) -> str | None:
    """An activation code as Airalo writes it in ``qrcode``, or None for anything else."""
    if not isinstance(text, str):
        return None
    text = text.strip()
    m = _LPA.fullmatch(text)
    return text if m and m.group(2) else None


def lpa_of(sim: Mapping[str, Any]) -> str | None:
    """The eSIM's activation code: ``qrcode`` (the LPA string), else built from ``lpa``
    (the SM-DP+ address, despite its name) and ``matching_id``."""
    code = _lpa(sim.get("qrcode"))
    if code is not None:
        return code
    host, matching = sim.get("lpa"), sim.get("matching_id")
    if isinstance(host, str) and isinstance(matching, str) and host.strip() and matching.strip():
        return _lpa(f"LPA:1${host.strip()}${matching.strip()}")
    return None


def apple_url_for(url: Any, lpa: str) -> str | None:
    """Apple's direct-install link, where it installs this very eSIM: Airalo's documented
    examples pair ``qrcode`` ``LPA:1$lpa.airalo.com$TEST`` with a link whose ``carddata``
    is another profile's code. A link for another code (or not Apple's) is left out."""
    if not isinstance(url, str) or not url.strip():
        return None
    parts = urlsplit(url.strip())
    if parts.scheme != "https" or parts.hostname != _APPLE_HOST:
        return None
    carddata = next(
        (
            unquote(v)
            for k, _, v in (q.partition("=") for q in parts.query.split("&"))
            if k == "carddata"
        ),
        None,
    )
    return url.strip() if carddata is not None and carddata.upper() == lpa.upper() else None


class _Text(HTMLParser):
    """Airalo's installation notes (``<p>``, ``<b>``, ``<ol><li>``, ``<br>``) as lines."""

    _BLOCKS = frozenset({"p", "br", "div", "ol", "ul", "li", "h1", "h2", "h3", "h4", "tr"})

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.lines: list[str] = []
        self._line: list[str] = []
        self._counters: list[int | None] = []

    def _end_line(self) -> None:
        text = " ".join("".join(self._line).split())
        if text:
            self.lines.append(text)
        self._line = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in self._BLOCKS:
            self._end_line()
        if tag == "ol":
            self._counters.append(0)
        elif tag == "ul":
            self._counters.append(None)
        elif tag == "li" and self._counters:
            n = self._counters[-1]
            if n is not None:
                self._counters[-1] = n + 1
                self._line.append(f"{n + 1}. ")
            else:
                self._line.append("- ")

    def handle_endtag(self, tag: str) -> None:
        if tag in self._BLOCKS:
            self._end_line()
        if tag in ("ol", "ul") and self._counters:
            self._counters.pop()

    def handle_data(self, data: str) -> None:
        self._line.append(data)

    def close(self) -> None:
        super().close()
        self._end_line()


def html_lines(text: Any) -> list[str]:
    """The lines of an HTML fragment as plain text: tags gone, entities read, no control
    characters (a terminal shows them), blank lines dropped."""
    if not isinstance(text, str) or not text.strip():
        return []
    parser = _Text()
    try:
        parser.feed(text)
        parser.close()
    except Exception:  # an unparsable fragment: its text without the tags
        return [" ".join(re.sub(r"<[^>]*>", " ", html.unescape(text)).split())]
    clean = (re.sub(r"[\x00-\x1f\x7f-\x9f]", "", ln).strip() for ln in parser.lines)
    return [ln for ln in clean if ln]


_LIST_ITEM = re.compile(r"(?:\d+\.|-)\s")


def _sections(lines: list[str]) -> list[tuple[str, ...]]:
    """Lines grouped as a heading and the list items under it."""
    out: list[list[str]] = []
    for ln in lines:
        if out and _LIST_ITEM.match(ln):
            out[-1].append(ln)
        else:
            out.append([ln])
    return [tuple(s) for s in out]


def install_notes(order: Mapping[str, Any]) -> str | None:
    """An order's ``qrcode_installation`` then ``manual_installation`` as plain text; the
    sections the second repeats (the eSIM name and coverage, how to reach data) are not
    repeated."""
    qr = _sections(html_lines(order.get("qrcode_installation")))
    manual = [s for s in _sections(html_lines(order.get("manual_installation"))) if s not in qr]
    lines = [ln for s in qr for ln in s]
    if lines and manual:
        lines.append("")
    lines += [ln for s in manual for ln in s]
    text = "\n".join(lines).strip()
    if not text:
        return None
    return text if len(text) <= MAX_NOTES else text[: MAX_NOTES - 1].rstrip() + "…"


def activation_from(sim: Mapping[str, Any], order: Mapping[str, Any] | None) -> Activation | None:
    """How to install one eSIM of an order answer, the order list, or ``/v2/sims/{iccid}``
    (its order, with the notes, in ``order``/``simable``); None without a readable code."""
    code = lpa_of(sim)
    if code is None:
        # No code of its own: the direct-install link may still carry it.
        url = sim.get("direct_apple_installation_url")
        if isinstance(url, str):
            query = urlsplit(url.strip()).query
            for key, _, value in (q.partition("=") for q in query.split("&")):
                if key == "carddata":
                    code = _lpa(unquote(value))
    if code is None:
        return None
    return Activation(
        code,
        apple_url=apple_url_for(sim.get("direct_apple_installation_url"), code),
        notes=install_notes(order or {}),
    )


def first_sim(item: Mapping[str, Any]) -> dict[str, Any] | None:
    """The eSIM of an order (esimctl orders one at a time): ``sims[0]`` with an ICCID."""
    sims = item.get("sims")
    if isinstance(sims, list) and sims and isinstance(sims[0], dict):
        iccid = sims[0].get("iccid")
        if isinstance(iccid, (str, int)) and str(iccid).strip():
            return sims[0]
    return None


def new_esim_from(
    data: Mapping[str, Any],
    *,
    account: str,
    now: datetime,
    reference: str | None = None,
) -> NewEsim:
    """A new-eSIM order (the ``POST /v2/orders`` answer, or one of ``GET /v2/orders``): the
    order with the charge it reports, its eSIM and how to install it."""
    sim = first_sim(data)
    iccid = str(sim["iccid"]).strip() if sim is not None else None
    order = order_from(data, account=account, now=now, iccid=iccid)
    order = replace(order, price=new_charge_in(data), reference=reference or order.reference)
    activation = activation_from(sim, data) if sim is not None else None
    return NewEsim(order, iccid=iccid, activation=activation)


def is_failed(item: Mapping[str, Any]) -> bool:
    """An order Airalo says failed or refunded (no eSIM came of it)."""
    status = as_dict(item.get("status")).get("slug") or item.get("status")
    return _ORDER_STATES.get(str(status or "").lower()) == OrderState.FAILED


# -- eSIMs ---------------------------------------------------------------------------------


def packages_from(history: Iterable[Mapping[str, Any]]) -> tuple[Package, ...]:
    """The package history of ``/v2/sims/{iccid}/packages``."""
    out = []
    for h in history:
        pkg = as_dict(h.get("package"))
        unlimited = pkg.get("is_unlimited") is True or _says_unlimited(pkg.get("data"))
        out.append(
            Package(
                name=str(pkg.get("title") or pkg.get("data") or pkg.get("id") or "") or None,
                state=_PACKAGE_STATES.get(str(h.get("status")).upper(), "unknown"),
                data_total_bytes=None if unlimited else to_bytes(pkg.get("amount")) or None,
                data_remaining_bytes=None if unlimited else to_bytes(h.get("remaining")),
                unlimited=unlimited,
                expires_at=parse_time(h.get("expired_at")),
            )
        )
    return tuple(out)


def esim_from(
    sim: Mapping[str, Any],
    usage: Mapping[str, Any] | None,
    *,
    account: str,
    now: datetime,
    history: list[dict[str, Any]] | None = None,
) -> Esim:
    """An entry of ``/v2/sims`` plus its ``/usage`` (and package history, if read)."""
    simable = as_dict(sim.get("simable"))
    u = as_dict(usage)
    status = str(u.get("status") or "").upper()
    recycled = sim.get("recycled") is True or status == "RECYCLED"
    if recycled:
        state = EsimState.RECYCLED
    elif usage is None:
        state = EsimState.UNKNOWN
    else:
        state = _USAGE_STATES.get(status, EsimState.UNKNOWN)

    # Figures as given (fractional, negative, absurd): the validator refuses by name.
    total, remaining = to_bytes(u.get("total")), to_bytes(u.get("remaining"))
    package_unlimited = _says_unlimited(simable.get("data"), simable.get("package_id"))
    packages = packages_from(history or [])
    unlimited = (
        u.get("is_unlimited") is True
        # Sandbox may say is_unlimited false with 0/0: the package bought says what it is.
        or (not total and not remaining and package_unlimited and not recycled)
        or any(p.unlimited and p.state == "active" for p in packages)
    )
    total_b = remaining_b = None
    if not unlimited and not recycled and total:
        # 0/0 is "unknown", never "0 left"; a missing remaining is unknown, never 0.
        total_b, remaining_b = total, remaining
    expires = parse_time(u.get("expired_at"))
    if state == EsimState.ACTIVE:
        if expires is not None and expires <= now:
            state = EsimState.EXPIRED
        elif remaining_b == 0 and total_b:
            state = EsimState.DEPLETED

    # The usage answer carries no fair-usage terms; the package history may (undocumented).
    note, daily = None, None
    for h in history or []:
        if str(h.get("status")).upper() == "ACTIVE":
            note, daily = fair_usage(as_dict(h.get("package")))
            if note is not None:
                break
    if not unlimited:
        daily = None

    ref = {"sim_id": str(sim.get("id", "")), "package_id": str(simable.get("package_id") or "")}
    if history is not None:
        ref["history"] = json.dumps(
            [
                [str(h.get("id")), str(as_dict(h.get("package")).get("id")), str(h.get("status"))]
                for h in history
            ]
        )
    e = Esim(
        account=account,
        provider=PROVIDER_ID,
        iccid=str(sim.get("iccid")),
        state=state,
        plan=str(simable["package"]) if simable.get("package") else None,
        data_total_bytes=total_b,
        data_remaining_bytes=remaining_b,
        unlimited=unlimited,
        expires_at=expires,
        as_of=now,
        packages=packages,
        unit_base=1024,
        ref={k: v for k, v in ref.items() if v},
        daily=daily,
        fair_usage=note,
    )
    # FINISHED on an unlimited (fair-usage) plan with days left is not "no data".
    return truthful_state(e, now)


def history_in(e: Esim | None) -> list[tuple[str, str, str]] | None:
    """The package history ``esim_from`` kept in ``ref``: (entry id, package id, status)
    of each entry; None when it was not read."""
    if e is None or "history" not in e.ref:
        return None
    try:
        rows = json.loads(e.ref["history"])
        return [(str(a), str(b), str(c)) for a, b, c in rows]
    except (ValueError, TypeError):
        return None


# -- errors --------------------------------------------------------------------------------


def business_error(code: int | None, reason: str, *, new_esim: bool = False) -> EsimctlError:
    """A business failure ``{"code": n, "reason": "..."}`` (``reason`` already scrubbed);
    ``new_esim``: the answer to an order for a new eSIM, not a top-up."""
    reason = reason.strip().rstrip(".")
    text = f"Airalo: {reason} (code {code})" if reason else f"Airalo refused (code {code})"
    if code == 11:
        detail = re.sub(r"^insufficient airalo credit\W*", "", reason, flags=re.IGNORECASE)
        what = "a new eSIM" if new_esim else "this top-up"
        return InsufficientBalance(
            f"not enough Airalo credit for {what}" + (f": {detail}" if detail else ""),
            hint="add credit in the Airalo Partner dashboard, then run the command again",
        )
    if code == 34 and new_esim:
        return InvalidInput(f"{text}: pick another plan ('esimctl plans --country CC')")
    if code == 89:
        return AuthRejected(
            f"{text}: add this machine's IP address to the allow-list in the Airalo "
            "Partner dashboard"
        )
    if code in (13, 33, 53):  # maintenance, stock, unexpected: try later
        return TemporaryFailure(text)
    if code == 34:
        return InvalidInput(f"{text}: pick another plan ('esimctl plans ESIM')")
    if code == 73:
        return ProviderError(
            f"{text}: the eSIM can no longer be used or topped up", code="esim_recycled"
        )
    return ProviderError(text)


def validation_error(items: Mapping[str, str]) -> EsimctlError:
    """A validation failure ``{"data": {field: text}}`` (the texts already scrubbed)."""
    pkg = items.get("package_id", "")
    if "exceed_limit" in pkg:
        return ProviderError("Airalo refused the top-up: the purchase limit for it is reached")
    if pkg:
        return InvalidInput(
            f"Airalo does not sell this plan for this eSIM ({pkg}); "
            "'esimctl plans ESIM' lists the ones it does"
        )
    if "iccid" in items:
        return InvalidInput(f"Airalo refused the ICCID: {items['iccid']}")
    detail = "; ".join(f"{k}: {v}" for k, v in items.items()) or "invalid parameters"
    return ProviderError(f"Airalo refused the request: {detail}")


def new_order_error(items: Mapping[str, str]) -> EsimctlError:
    """A validation failure of ``POST /v2/orders`` (a new eSIM; texts already scrubbed):
    nothing was bought."""
    if "package_id" in items:
        return InvalidInput(
            f"Airalo does not sell this plan as a new eSIM ({items['package_id']}); "
            "'esimctl plans --country CC' lists the ones it does"
        )
    quantity = items.get("quantity", "")
    if "not available" in quantity.lower():
        # A refusal (nothing bought), not "try later": to a purchase, that would read as an
        # outcome to look up.
        return ProviderError(
            f"Airalo has no eSIM of this plan in stock now ({quantity}); try another plan or later",
            code="out_of_stock",
        )
    detail = "; ".join(f"{k}: {v}" for k, v in items.items()) or "invalid parameters"
    return ProviderError(f"Airalo refused the order: {detail}")
