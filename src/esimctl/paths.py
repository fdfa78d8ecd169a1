"""Every path esimctl uses, in one place.

``ESIMCTL_HOME`` puts everything under one directory (tests, scripts, the demo profile);
otherwise platformdirs gives the user's config, data, cache, state and log dirs.

Everything esimctl creates is private whatever the umask: directories 0700 (parents
included: ``Path.mkdir(parents=True, mode=0o700)`` gives the parents 0777 & ~umask),
files 0600. ``private_dir`` and ``private_file`` are the only ways esimctl makes either.

A home esimctl cannot write (a read-only file system, a directory that is not the user's)
is reported by these helpers as ``NotWritable``: one line naming the directory and what
esimctl needs to write there, exit 1. It is also an ``OSError``, so code that already
survives an unwritable file (a provider's journal) still does.
"""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass
from pathlib import Path

from esimctl.errors import EsimctlError

APP = "esimctl"

_WHY = {
    errno.EROFS: "read-only file system",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


class NotWritable(EsimctlError, OSError):
    """esimctl cannot write where it keeps its files (exit 1: retrying will not help until
    the directory is made writable or ``ESIMCTL_HOME`` points elsewhere)."""

    code = "home_not_writable"

    def __init__(self, where: Path, *, why: str, what: str = "its files", detail: str = "") -> None:
        there = f"there ({detail})" if detail else "there"
        super().__init__(
            f"cannot write {where} ({why}): esimctl needs to write {what} {there}; "
            "make it writable or set ESIMCTL_HOME"
        )
        self.where = where
        self.why = why
        self.what = what
        self.errno = errno.EROFS if why == _WHY[errno.EROFS] else errno.EACCES
        self.strerror = why
        self.filename = str(where)

    def __str__(self) -> str:
        return self.message


def _why(path: Path) -> str:
    try:
        if os.statvfs(path).f_flag & os.ST_RDONLY:
            return _WHY[errno.EROFS]
    except (OSError, AttributeError):  # no statvfs (Windows): permissions it is
        pass
    return _WHY[errno.EACCES]


def _can_write(path: Path) -> bool:
    effective = os.access in os.supports_effective_ids
    return os.access(path, os.W_OK, effective_ids=effective)


def unwritable(path: Path, *, what: str = "its files") -> NotWritable | None:
    """Why esimctl could not write ``path`` (or create it), without writing anything: the
    path itself if it exists and cannot be written, else its nearest existing ancestor if
    that cannot be; None when it can."""
    p = path
    while not os.path.lexists(p):
        if p.parent == p:
            return None
        p = p.parent
    if _can_write(p):
        return None
    return NotWritable(p, why=_why(p), what=what)


def _not_writable(exc: OSError, where: Path, what: str) -> OSError:
    """``exc`` as a ``NotWritable`` naming ``where`` when it says the place is read-only."""
    why = _WHY.get(exc.errno or 0)
    if why is None or isinstance(exc, NotWritable):
        return exc
    return NotWritable(where, why=why, what=what)


@dataclass(frozen=True)
class Paths:
    config_dir: Path
    data_dir: Path
    cache_dir: Path
    state_dir: Path
    log_dir: Path

    @property
    def config_file(self) -> Path:
        return self.config_dir / "config.toml"

    @property
    def ledger_file(self) -> Path:
        return self.data_dir / "ledger.sqlite3"

    @property
    def lock_file(self) -> Path:
        return self.state_dir / "renew.lock"

    @property
    def demo_home(self) -> Path:
        return self.cache_dir / "demo-profile"

    @classmethod
    def under(cls, home: Path) -> Paths:
        return cls(
            config_dir=home,
            data_dir=home / "data",
            cache_dir=home / "cache",
            state_dir=home / "state",
            log_dir=home / "log",
        )

    @classmethod
    def from_environ(cls, environ: dict[str, str] | os._Environ[str] | None = None) -> Paths:
        env = os.environ if environ is None else environ
        home = env.get("ESIMCTL_HOME")
        if home:
            return cls.under(Path(home).expanduser())
        import platformdirs

        return cls(
            config_dir=Path(platformdirs.user_config_dir(APP, appauthor=False)),
            data_dir=Path(platformdirs.user_data_dir(APP, appauthor=False)),
            cache_dir=Path(platformdirs.user_cache_dir(APP, appauthor=False)),
            state_dir=Path(platformdirs.user_state_dir(APP, appauthor=False)),
            log_dir=Path(platformdirs.user_log_dir(APP, appauthor=False)),
        )

    def ensure(self, path: Path) -> Path:
        """``path``, made if missing and if it can be. In a home esimctl cannot write it is
        returned as it is (maybe missing), so reading from it still works; whoever writes
        there gets ``NotWritable`` then."""
        if path.is_dir():
            return path
        try:
            return private_dir(path)
        except NotWritable:
            return path


def private_dir(path: Path, *, what: str = "its files") -> Path:
    """Make ``path`` and any missing parents, each 0700 whatever the umask.

    Directories that exist already are left as they are: they are the user's. Raises
    ``NotWritable`` when ``path`` cannot be made, or exists and cannot be written (every
    caller writes in it next).
    """
    missing: list[Path] = []
    p = path
    while not p.is_dir():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    if not missing and (blocked := unwritable(path, what=what)) is not None:
        raise blocked
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            if not d.is_dir():
                raise
            continue  # made meanwhile by another process: theirs to set
        except OSError as exc:
            raise _not_writable(exc, d.parent, what) from exc
        os.chmod(d, 0o700)  # mkdir's mode is masked by the umask
    return path


def private_file(path: Path, *, what: str | None = None) -> Path:
    """Create ``path`` empty and 0600 if it does not exist (its dir 0700); keep it if it does."""
    what = what or path.name
    if path.exists():
        return path  # nothing to create: its directory need not be writable
    private_dir(path.parent, what=what)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    except OSError as exc:
        raise _not_writable(exc, path.parent, what) from exc
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` so that a reader sees the old file or the new one, never half of it."""
    private_dir(path.parent, what=path.name)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    except OSError as exc:
        raise _not_writable(exc, path.parent, path.name) from exc
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchmod(fh.fileno(), mode)  # O_CREAT's mode is masked by the umask
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
