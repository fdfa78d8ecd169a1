"""Every command has help text and a page in docs/ that shows how to call it."""

from pathlib import Path

import pytest
import typer

from esimctl.cli.app import app

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def _commands():
    root = typer.main.get_command(app)
    out = []

    def walk(cmd, path):
        subs = getattr(cmd, "commands", None)
        if subs:
            for name, sub in subs.items():
                walk(sub, [*path, name])
        else:
            out.append((path, cmd))

    walk(root, [])
    return out


COMMANDS = _commands()


def test_there_are_commands_to_check():
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {
        "status",
        "plans",
        "renew",
        "history",
        "account add",
        "account list",
        "account test",
        "account remove",
    } <= names


@pytest.mark.parametrize(("path", "cmd"), COMMANDS, ids=[" ".join(p) for p, _ in COMMANDS])
def test_command_has_help_and_a_docs_page(path, cmd):
    assert (cmd.help or "").strip(), f"esimctl {' '.join(path)} has no help text"
    page = DOCS / "commands" / f"{path[0]}.md"
    assert page.exists(), f"missing {page.relative_to(ROOT)}"
    assert f"esimctl {' '.join(path)}" in page.read_text(encoding="utf-8")
    for param in cmd.params:
        for opt in getattr(param, "opts", []):
            if opt.startswith("--") and opt not in ("--help",):
                assert opt in page.read_text(encoding="utf-8"), (
                    f"{opt} of 'esimctl {' '.join(path)}' is not in {page.name}"
                )


def test_every_doc_link_resolves():
    import re

    for md in [ROOT / "README.md", *DOCS.rglob("*.md")]:
        for target in re.findall(r"\]\(([^)#]+\.md)\)", md.read_text(encoding="utf-8")):
            if "://" in target:
                continue
            assert (md.parent / target).resolve().exists(), f"{md.name} links to {target}"


def test_every_exit_code_of_the_spec_is_documented():
    from esimctl.errors import ExitCode

    text = (DOCS / "exit-codes.md").read_text(encoding="utf-8")
    for code in ExitCode:
        assert f"| {int(code)} |" in text
