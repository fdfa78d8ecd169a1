"""``esimctl completion SHELL``: the script that makes a shell ask esimctl what a Tab offers.

The script is Typer's own (its protocol: ``_ESIMCTL_COMPLETE=complete_bash`` with the
shell's words); what esimctl answers is in ``cli/complete.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

from esimctl.env import Env
from esimctl.errors import InvalidInput

from .common import Result

SHELLS = ("bash", "zsh", "fish")
PROG = "esimctl"
#: The variable Typer reads to answer a completion request instead of running a command.
COMPLETE_VAR = "_ESIMCTL_COMPLETE"


@dataclass(frozen=True)
class CompletionOptions:
    shell: str


def run_completion(opts: CompletionOptions, env: Env) -> Result:
    shell = opts.shell.strip().lower()
    if shell not in SHELLS:
        raise InvalidInput(f"unknown shell {opts.shell!r}: use bash, zsh or fish")
    from typer._completion_shared import get_completion_script

    script = get_completion_script(prog_name=PROG, complete_var=COMPLETE_VAR, shell=shell)
    return Result(command="completion", data={"shell": shell, "script": script})
