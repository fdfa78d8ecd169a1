"""The one exception hierarchy of esimctl.

Every error carries the exit code of SPEC and a stable ``code`` string for the JSON
envelope. Commands and providers raise; only ``cli.app.main`` turns them into exit codes.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from enum import IntEnum


class ExitCode(IntEnum):
    OK = 0
    FAILURE = 1
    USAGE = 2
    PARTIAL = 3
    CREDENTIALS = 4
    REFUSED = 5
    ATTENTION = 8
    TEMPORARY = 75
    INTERRUPTED = 130


class EsimctlError(Exception):
    """Base of every error esimctl reports to the user."""

    exit_code: ExitCode = ExitCode.FAILURE
    code: str = "failure"

    def __init__(
        self,
        message: str,
        *,
        hint: str | None = None,
        account: str | None = None,
        provider: str | None = None,
        code: str | None = None,
        iccid: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.account = account
        self.provider = provider
        #: The one eSIM this error is about, when its account otherwise answered.
        self.iccid = iccid
        if code is not None:
            self.code = code

    def for_account(self, account: str, provider: str) -> EsimctlError:
        """Attach the account that raised this error (only if not already set)."""
        if self.account is None:
            self.account = account
        if self.provider is None:
            self.provider = provider
        return self

    def to_json(self) -> dict[str, str | None]:
        return {
            "code": self.code,
            "message": self.message,
            "account": self.account,
            "provider": self.provider,
        }


class InvalidInput(EsimctlError):
    """Bad input: a malformed value, an unknown name, a plan that does not exist."""

    exit_code = ExitCode.USAGE
    code = "invalid_input"


class NotFound(InvalidInput):
    code = "not_found"


class ConfigError(InvalidInput):
    code = "config_invalid"


class ConsentRequired(InvalidInput):
    """A purchase was asked for where no prompt is possible and --yes was not given."""

    code = "consent_required"


class CredentialsError(EsimctlError):
    """Credentials are missing, unreadable or rejected by the provider."""

    exit_code = ExitCode.CREDENTIALS
    code = "credentials_missing"


class AuthRejected(CredentialsError):
    code = "auth_rejected"


class LimitRefused(EsimctlError):
    """A limit of the user's refused the action: --max-price, a budget, a renewal rule."""

    exit_code = ExitCode.REFUSED
    code = "limit_refused"


class TemporaryFailure(EsimctlError):
    """Retry later: rate limited, provider or network down, the renewal lock is held."""

    exit_code = ExitCode.TEMPORARY
    code = "unavailable"


class RateLimited(TemporaryFailure):
    code = "rate_limited"

    def __init__(
        self,
        message: str,
        *,
        retry_after: float | None = None,
        hint: str | None = None,
        account: str | None = None,
        provider: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint, account=account, provider=provider)
        self.retry_after = retry_after


class LockHeld(TemporaryFailure):
    code = "lock_held"


class OutcomeUnknown(TemporaryFailure):
    """A purchase request was sent but its answer never arrived: reconcile before buying again."""

    code = "outcome_unknown"


class ProviderError(EsimctlError):
    """The provider answered with an error esimctl cannot map to anything more precise."""

    code = "provider_error"


class InsufficientBalance(ProviderError):
    code = "insufficient_balance"


class Unsupported(EsimctlError):
    """The provider cannot do what was asked (no API for it)."""

    exit_code = ExitCode.USAGE
    code = "unsupported"


class NotSent(TemporaryFailure):
    """The request never reached the provider (no network, refused, TLS): a purchase
    raising this was certainly not made. Its JSON ``code`` stays ``unavailable``."""


class Interrupted(EsimctlError):
    """Ctrl-C: reported where something was already done (a top-up bought, still pending)."""

    exit_code = ExitCode.INTERRUPTED
    code = "interrupted"


class Aborted(EsimctlError):
    """The user answered no at a prompt."""

    exit_code = ExitCode.FAILURE
    code = "aborted"


# -- the one rule for the outcome of a run that did several things ------------------------------


def run_outcome(
    errors: Sequence[EsimctlError],
    *,
    answered: Collection[str] = (),
    achieved: bool = False,
) -> tuple[ExitCode, str]:
    """The exit code and JSON ``status`` of a run that did several things (docs/exit-codes.md).

    ``answered``: the accounts that answered; ``achieved``: the run did something the user
    asked for besides answering (``renew --auto`` bought a top-up). In order:

    1. interrupted (Ctrl-C, SIGTERM): 130;
    2. no error: 0, ``success``;
    3. failures (anything but a limit's refusal): 3 if some account answered that did
       not fail, or something was achieved; else the failures' common code, or 1;
    4. only refusals by a limit: 5, however much else went well.

    ``status`` is ``success`` without errors; ``partial`` when the errors sit beside
    something that worked: a purchase made, or (for failures) an account that answered;
    else ``error``. A run refused by a limit that bought nothing is an ``error``. An
    error about one eSIM (``iccid`` set: implausible or unreadable figures) fails that eSIM
    alone: its account still answered.
    """
    if not errors:
        return ExitCode.OK, "success"
    failures = [e for e in errors if not isinstance(e, (LimitRefused, Interrupted))]
    failed = {e.account for e in failures if e.iccid is None}
    worked = achieved or (bool(failures) and bool(set(answered) - failed))
    status = "partial" if worked else "error"
    if any(isinstance(e, Interrupted) for e in errors):
        return ExitCode.INTERRUPTED, status
    if failures:
        if worked:
            return ExitCode.PARTIAL, status
        codes = {e.exit_code for e in failures}
        return (codes.pop() if len(codes) == 1 else ExitCode.FAILURE), status
    return ExitCode.REFUSED, status
