"""Sizes and prices in the units providers count them in.

Sizes come as MB or GB of 1024 (Airalo, Celitech mostly) or of 1000 (eSIM Go, Celitech
sometimes), possibly fractional; prices in major units (USD) or in minor ones (cents, or
1/10,000 USD at eSIM Access). Arithmetic is exact (``Decimal``, never a binary float).
Like ``values``, nothing here raises on a value: what cannot be read is None, a negative
or absurd figure is kept as given for ``esimctl.validate`` to refuse by name.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP
from typing import Any, Literal

from esimctl.models import Money
from esimctl.providers.kit.values import MAX_EXPONENT, to_decimal

#: Bytes beyond any float are not kept as a number (they could not even be shown); the
#: validator already names anything above 100 TB.
MAX_BYTES = 10**307

Rounding = Literal["half_up", "down", "exact"]

_POWERS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4}


def unit_factor(unit: str, base: int = 1024) -> int | None:
    """Bytes in one ``unit``: ``B``/``BYTES``, ``KB``, ``MB``, ``GB``, ``TB`` of ``base``
    (1000 or 1024; a bare ``K``/``M``/``G``/``T`` too); ``KiB``..``TiB`` are always of
    1024. None for a unit it does not know (the provider decides what that means)."""
    if base not in (1000, 1024):
        raise ValueError(f"a unit base is 1000 or 1024, not {base}")
    u = unit.strip().upper()
    if u in ("B", "BYTE", "BYTES"):
        return 1
    if len(u) == 3 and u.endswith("IB") and u[0] in _POWERS:
        return int(1024 ** _POWERS[u[0]])
    prefix = u[:-1] if u.endswith("B") else u
    if len(prefix) == 1 and prefix in _POWERS:
        return int(base ** _POWERS[prefix])
    return None


def to_bytes(
    value: Any,
    unit: str = "MB",
    *,
    base: int = 1024,
    rounding: Rounding = "half_up",
    max_bytes: int | None = MAX_BYTES,
    max_exponent: int = MAX_EXPONENT,
) -> int | None:
    """A figure in ``unit`` of ``base`` (``3072`` MB, ``"0.5"`` GB) as whole bytes.

    ``rounding`` says what a fraction of a byte becomes: ``half_up`` (the nearest byte;
    half a MB of 1024 is 524,288, never 0), ``down`` (truncated toward zero) or ``exact``
    (None unless the figure is a whole number of bytes). Beyond ``max_bytes`` (either
    sign) the figure is None; ``max_bytes=None`` keeps any size. Junk, NaN, infinities,
    booleans and unknown units are None.
    """
    factor = unit_factor(unit, base)
    d = to_decimal(value, max_exponent=max_exponent)
    if factor is None or d is None:
        return None
    n = d * factor
    if rounding == "exact":
        if n != n.to_integral_value():
            return None
        whole = int(n)
    elif rounding == "down":
        whole = int(n)
    else:
        whole = int(n.to_integral_value(rounding=ROUND_HALF_UP))
    if max_bytes is not None and abs(whole) > max_bytes:
        return None
    return whole


def to_money(
    value: Any, currency: str, *, scale: int = 1, max_exponent: int = MAX_EXPONENT
) -> Money | None:
    """A price as given in units of ``1/scale`` of ``currency`` (``scale=100``: cents,
    ``10_000``: eSIM Access's 1/10,000 USD) as ``Money`` in major units; None when it is
    no finite number. Zero and negative prices are kept (the validator refuses them:
    a plan without a price would slip past it). ``currency`` is taken as given."""
    d = to_decimal(value, max_exponent=max_exponent)
    if d is None:
        return None
    return Money(d if scale == 1 else d / scale, currency)
