"""The plausibility guards made by ``Provider.__init_subclass__``: every provider's own
readings are checked, wherever the method comes from, and plugins written before the
guards existed still work."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar

import pytest

from esimctl.config import AccountConfig
from esimctl.errors import ProviderError
from esimctl.models import Esim, EsimState
from esimctl.providers.base import Capability, Provider, ProviderContext

GOOD = "8999000000000000012"
BAD = "8999000000000000020"


def _esim(iccid: str, remaining: int) -> Esim:
    return Esim(
        account="p",
        provider="mixed",
        iccid=iccid,
        state=EsimState.ACTIVE,
        data_total_bytes=3 * 1024**3,
        data_remaining_bytes=remaining,
    )


class ListingMixin:
    async def list_esims(self) -> list[Esim]:
        return [_esim(GOOD, 1024**3), _esim(BAD, 10**30)]


class Mixed(ListingMixin, Provider):
    id: ClassVar[str] = "mixed"
    display_name: ClassVar[str] = "Mixed"
    capabilities: ClassVar[frozenset[Capability]] = frozenset({Capability.LIST_ESIMS})


class OldStyle(Provider):
    """A plugin whose ``__init__`` never called ``Provider.__init__``."""

    id: ClassVar[str] = "old"
    display_name: ClassVar[str] = "Old"

    def __init__(self, ctx: ProviderContext) -> None:
        self.ctx = ctx

    async def list_esims(self) -> list[Esim]:
        return [_esim(GOOD, 1024**3), _esim(BAD, -1)]


def _ctx(tmp_path: Path) -> ProviderContext:
    return ProviderContext(
        account=AccountConfig("p", "mixed"),
        secrets={},
        clock=lambda: datetime.now(UTC),
        state_dir=tmp_path,
    )


def test_a_method_from_a_mixin_is_guarded(tmp_path):
    p = Mixed(_ctx(tmp_path))
    esims = asyncio.run(p.list_esims())
    assert [e.iccid for e in esims] == [GOOD]
    (err,) = p.rejected
    assert BAD in err.message and err.code == "implausible_figures"


def test_a_plugin_that_skips_provider_init_is_guarded_and_works(tmp_path):
    p = OldStyle(_ctx(tmp_path))
    esims = asyncio.run(p.list_esims())
    assert [e.iccid for e in esims] == [GOOD]
    assert BAD in p.rejected[0].message
    # get_esim of the base reads through the guarded list and names the refused eSIM.
    with pytest.raises(ProviderError, match="cannot believe"):
        asyncio.run(p.get_esim(BAD))


def test_guards_are_not_stacked_on_subclasses(tmp_path):
    class Sub(Mixed):
        pass

    assert Sub.list_esims is Mixed.list_esims
    p = Sub(_ctx(tmp_path))
    asyncio.run(p.list_esims())
    assert len(p.rejected) == 1
