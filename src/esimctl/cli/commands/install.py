"""``esimctl install ESIM``: put an eSIM on a phone from the terminal — its QR code, the
activation code for entry by hand, Apple's direct-install link, the install deadline and
the seller's notes. The activation code is secret-like (whoever holds it can install the
eSIM): shown only here, when asked, and after ``buy``; never in logs, caches or ``status``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from esimctl.env import Env
from esimctl.errors import NotFound
from esimctl.models import Activation, Esim, EsimState
from esimctl.output import human
from esimctl.output.human import describe, esc
from esimctl.serialize import iso
from esimctl.service import resolve_esim

from .common import Result

#: Where a code given by hand (``esim add --lpa``) is kept: the account's credential store,
#: under this user name (``esim:ICCID``).
STORE_KEY = "esim:{iccid}"


@dataclass(frozen=True)
class InstallOptions:
    esim: str
    accounts: tuple[str, ...] = ()
    png: str | None = None
    svg: str | None = None


def keep_lpa(env: Env, account: str, iccid: str, lpa: str) -> None:
    """Keep a code the user gave (a marketplace eSIM) in the account's credential store."""
    store = str(env.config.account(account).options.get("credential_store", "keyring"))
    env.credentials.store_for(store).set(STORE_KEY.format(iccid=iccid), {"lpa": lpa})


def kept_lpa(env: Env, account: str, iccid: str) -> str | None:
    store = str(env.config.account(account).options.get("credential_store", "keyring"))
    try:
        kept = env.credentials.store_for(store).get(STORE_KEY.format(iccid=iccid))
    except Exception:  # a keyring that cannot answer: as if nothing was kept
        return None
    return (kept or {}).get("lpa")


def activation_json(a: Activation, e: Esim | None, iccid: str) -> dict[str, Any]:
    install_by = e.expires_at if e is not None and e.state == EsimState.NOT_ACTIVE else None
    return {
        "iccid": iccid,
        "label": e.label if e is not None else None,
        "lpa": a.lpa,
        "smdp_address": a.smdp,
        "matching_id": a.matching_id,
        "apple_url": a.apple_url,
        "install_by": iso(install_by),
        "notes": a.notes,
    }


def install_lines(env: Env, a: Activation, e: Esim | None, now: datetime) -> list[str]:
    """What a person needs to install it: the code to scan (on a terminal), the parts for
    entry by hand, the deadline, the notes."""
    from esimctl.output import qr

    lines: list[str] = []
    if env.stdout_tty:
        lines.append("")
        lines.extend(qr.lines(a.lpa, color=env.use_color))
        lines.append("")
        lines.append("Scan it with the phone's camera (Settings › Mobile › Add eSIM › QR code),")
        lines.append("or enter it by hand:")
    else:
        lines.append("enter it by hand:")
    if a.smdp and a.matching_id:
        lines.append(f"  SM-DP+ address   {esc(a.smdp)}")
        lines.append(f"  activation code  {esc(a.matching_id)}")
    lines.append(f"  LPA string       {esc(a.lpa)}")
    if a.apple_url:
        lines.append(f"  iPhone (iOS 17.4 or later), open: {esc(a.apple_url)}")
    if e is not None and e.state == EsimState.NOT_ACTIVE and e.expires_at is not None:
        lines.append(
            f"install by {human.short_local_time(e.expires_at, now)} "
            f"({human.until(e.expires_at, now)})"
        )
    if a.notes:
        lines.append(f"seller's notes: {esc(a.notes)}")
    return lines


def run_install(opts: InstallOptions, env: Env) -> Result:
    e = resolve_esim(env, opts.esim, opts.accounts)
    account = env.config.account(e.account)
    provider = env.session.run(env.session.provider(account))
    activation = env.session.run(provider.activation(e.iccid))
    if activation is None:
        lpa = kept_lpa(env, e.account, e.iccid)
        activation = Activation(lpa) if lpa else None
    if activation is None:
        raise NotFound(
            f"{provider.display_name} does not give the activation code of {describe(e)} "
            "again; find it in the seller's app or e-mail"
            + (
                f", and keep it with: esimctl esim edit {e.label or e.iccid} --lpa 'LPA:1$…'"
                if provider.id == "manual"
                else ""
            ),
            account=e.account,
        )
    for path, kind in ((opts.png, "png"), (opts.svg, "svg")):
        if path:
            from esimctl.output import qr

            qr.save(activation.lpa, Path(path), kind)
    now = env.now()
    lines = [
        f"[bold]install {esc(describe(e))}[/] · {esc(e.plan or '')} · {esc(provider.display_name)}"
    ]
    lines.extend(install_lines(env, activation, e, now))
    for path in (opts.png, opts.svg):
        if path:
            lines.append(f"written: {esc(path)}")
    return Result(
        command="install", data={"activation": activation_json(activation, e, e.iccid)}, lines=lines
    )
