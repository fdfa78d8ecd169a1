"""Issue 11's seams, seen from outside: one event loop and one provider instance per run,
one rule for the exit code of a run that did several things, the provider journal in the
ledger (with the JSON journals of older versions carried over), and the order book as
the only reader of order states."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import pytest

from esimctl.env import Env
from esimctl.errors import (
    ExitCode,
    Interrupted,
    LimitRefused,
    ProviderError,
    TemporaryFailure,
    run_outcome,
)
from test_plugin_api import API_KEY, _add_account, install  # noqa: F401

SRC = Path(__file__).resolve().parent.parent / "src" / "esimctl"

COUNTING = """
import asyncio
from typing import ClassVar

from example_plugin import ExampleMobileProvider

OPENED: list[int] = []
CLOSED: list[int] = []
LOOPS: set[int] = set()


class CountingMobile(ExampleMobileProvider):
    def __init__(self, ctx):
        super().__init__(ctx)
        OPENED.append(id(self))

    async def aclose(self):
        CLOSED.append(id(self))

    async def list_esims(self):
        LOOPS.add(id(asyncio.get_running_loop()))
        return await super().list_esims()

    async def get_esim(self, iccid):
        LOOPS.add(id(asyncio.get_running_loop()))
        return await super().get_esim(iccid)

    async def buy_topup(self, esim, plan, reference):
        LOOPS.add(id(asyncio.get_running_loop()))
        return await super().buy_topup(esim, plan, reference)
"""


def test_renew_auto_opens_each_provider_once_on_one_event_loop(
    cli: Any, install: Any, home: Path, tmp_path: Path
) -> None:
    from example_plugin import seller

    install(
        "esimctl-counting",
        {"examplemobile": "counting_mobile:CountingMobile"},
        modules={"counting_mobile": COUNTING},
    )
    import counting_mobile

    assert _add_account(cli, seller.new_seller(tmp_path / "seller.json", API_KEY)).exit_code == 0
    with (home / "config.toml").open("a", encoding="utf-8") as fh:
        fh.write('\n[renewal.esims.Lisbon]\ndata_below = "1GB"\nplan = "em-1gb-7d"\n')
    counting_mobile.OPENED.clear()
    counting_mobile.CLOSED.clear()
    counting_mobile.LOOPS.clear()
    r = cli("renew", "--auto", "--yes", "--json")
    assert r.exit_code == 0, r
    (order,) = r.json["data"]["orders"]
    assert order["event"] == "bought" and order["applied"] is True
    # Fetched, bought and verified through one instance on one loop, closed at the end.
    assert len(counting_mobile.OPENED) == 1
    assert counting_mobile.CLOSED == counting_mobile.OPENED
    assert len(counting_mobile.LOOPS) == 1


def test_bought_one_and_refused_another_is_exit_5_partial(cli: Any, home: Path) -> None:
    profile = home / "cache" / "demo-profile"
    profile.mkdir(parents=True)
    (profile / "config.toml").write_text(
        '\n[renewal.esims.Tokyo]\ndata_below = "500MB"\nplan = "jp-1gb-3d"\n'
        + '\n[renewal.esims.Europe]\nexpires_within = "7d"\nplan = "eu-unl-10d"\n'
        + 'max_price = "1 USD"\n',
        encoding="utf-8",
    )
    r = cli("--demo", "renew", "--auto", "--yes", "--json")
    assert r.exit_code == ExitCode.REFUSED, r
    assert r.json["status"] == "partial"
    actions = {d["label"]: d["action"] for d in r.json["data"]["decisions"]}
    assert actions["Tokyo"] == "bought" and actions["Europe"] == "refused"
    assert [o["event"] for o in r.json["data"]["orders"]] == ["bought"]


@pytest.mark.parametrize(
    ("errors", "answered", "achieved", "expected"),
    [
        ([], set(), False, (ExitCode.OK, "success")),
        ([LimitRefused("r")], {"a"}, False, (ExitCode.REFUSED, "error")),
        ([LimitRefused("r")], {"a"}, True, (ExitCode.REFUSED, "partial")),
        ([TemporaryFailure("t", account="b")], {"a"}, False, (ExitCode.PARTIAL, "partial")),
        ([TemporaryFailure("t", account="a")], {"a"}, False, (ExitCode.TEMPORARY, "error")),
        ([TemporaryFailure("t", account="a")], {"a"}, True, (ExitCode.PARTIAL, "partial")),
        (
            [ProviderError("x", account="a"), TemporaryFailure("t", account="b")],
            set(),
            False,
            (ExitCode.FAILURE, "error"),
        ),
        ([ProviderError("one eSIM", account="a", iccid="89")], {"a"}, False, (3, "partial")),
        ([Interrupted("i"), LimitRefused("r")], set(), True, (ExitCode.INTERRUPTED, "partial")),
    ],
)
def test_one_rule_for_the_exit_code(
    errors: list[Any], answered: set[str], achieved: bool, expected: tuple[int, str]
) -> None:
    assert run_outcome(errors, answered=answered, achieved=achieved) == expected


def test_old_json_journals_are_carried_into_the_ledger_once(tmp_path: Path) -> None:
    from esimctl.service import open_provider

    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text(
        '[accounts.go]\nprovider = "esimgo"\nbase_url = "https://api.esim-go.example"\n',
        encoding="utf-8",
    )
    env = Env.for_tests(environ={"ESIMCTL_HOME": str(home), "ESIMCTL_GO_API_KEY": "k" * 20})
    state = env.paths.ensure(env.paths.state_dir / "accounts" / "go")
    old = {
        "esimctl-aaa": {"iccid": "8944", "plan_id": "b1", "sent_at": env.now().isoformat()},
        "esimctl-bbb": {"order": "ORD-7", "sent_at": env.now().isoformat()},
    }
    (state / "esimgo-purchases.json").write_text(json.dumps(old), encoding="utf-8")
    provider = open_provider(env, env.config.account("go"))
    assert provider.ctx.journal.entry("esimctl-aaa")["plan_id"] == "b1"
    assert provider.ctx.journal.claimed_order_ids(except_reference="esimctl-aaa") == {"ORD-7"}
    assert not (state / "esimgo-purchases.json").exists()
    assert (state / "esimgo-purchases.json.migrated").exists()
    # What the provider records now is kept in the ledger, beside the orders.
    provider.ctx.journal.record("esimctl-aaa", order="ORD-8")
    again = open_provider(env, env.config.account("go"))
    assert again.ctx.journal.entry("esimctl-aaa") == {
        **old["esimctl-aaa"],
        "order": "ORD-8",
    }
    assert len(again.ctx.journal.entries()) == 2


def _compares_states(path: Path) -> list[str]:
    """Places in ``path`` that name an order state of the ledger."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and node.id == "INTENT":
            found.append(f"{path.name}:{node.lineno} INTENT")
        if (
            isinstance(node, ast.Attribute)
            and node.attr == "state"
            and isinstance(node.value, ast.Name)
            and node.value.id in ("row", "r", "current")
        ):
            found.append(f"{path.name}:{node.lineno} {node.value.id}.state")
        if isinstance(node, ast.keyword) and node.arg == "states":
            found.append(f"{path.name}:{node.lineno} states=")
    return found


def test_only_the_order_book_reads_order_states() -> None:
    readers: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        if path.name in ("book.py", "ledger.py"):
            continue
        readers.extend(_compares_states(path))
    assert readers == []


LOSES_ITS_JOURNAL = """
from typing import ClassVar

from example_plugin import ExampleMobileProvider

from esimctl.ledger import LedgerBusy


class LosesItsJournal(ExampleMobileProvider):
    async def buy_topup(self, esim, plan, reference):
        await super().buy_topup(esim, plan, reference)  # the seller took it
        # ... and recording that in ctx.journal failed: the ledger was busy.
        raise LedgerBusy("the ledger is locked by another process", code="ledger_busy")
"""


def test_a_journal_that_fails_after_the_request_leaves_the_purchase_unresolved(
    cli: Any, install: Any, tmp_path: Path
) -> None:
    from example_plugin import seller

    install(
        "esimctl-loses",
        {"examplemobile": "loses_journal:LosesItsJournal"},
        modules={"loses_journal": LOSES_ITS_JOURNAL},
    )
    seller_file = seller.new_seller(tmp_path / "seller.json", API_KEY)
    assert _add_account(cli, seller_file).exit_code == 0
    r = cli("renew", "Lisbon", "--plan", "em-1gb-7d", "--yes", "--json")
    assert r.exit_code == ExitCode.TEMPORARY, r  # outcome unknown, never "failed"
    (row,) = cli("history", "--local", "--json").json["data"]["orders"]
    assert row["state"] == "pending"  # an unresolved intent: it counts, and is looked up
    # The next renew finds the purchase at the seller by its reference: not bought twice.
    again = cli("renew", "Lisbon", "--plan", "em-1gb-7d", "--yes", "--json")
    assert again.exit_code == 0, again
    sold = json.loads(seller_file.read_text(encoding="utf-8"))
    assert len(sold["purchases"]) == 1


def test_the_session_ends_what_an_interrupted_run_left_behind(tmp_path: Path) -> None:
    import asyncio

    from esimctl.service import Session

    session = Session(Env.for_tests(environ={"ESIMCTL_HOME": str(tmp_path)}))
    left: dict[str, asyncio.Task[None]] = {}

    async def interrupted() -> None:
        left["request"] = asyncio.ensure_future(asyncio.sleep(60))
        await asyncio.sleep(0)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        session.run(interrupted())
    assert left["request"].cancelled()
    session.close()
    session.close()  # twice is harmless
