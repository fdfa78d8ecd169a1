"""Every path esimctl uses, in one place.

``ESIMCTL_HOME`` puts everything under one directory (tests, scripts, the demo profile);
otherwise platformdirs gives the user's config, data, cache, state and log dirs.

Everything esimctl creates is private whatever the umask: directories 0700 (parents
included: ``Path.mkdir(parents=True, mode=0o700)`` gives the parents 0777 & ~umask),
files 0600. ``private_dir`` and ``private_file`` are the only ways esimctl makes either.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

APP = "esimctl"


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
        return private_dir(path)


def private_dir(path: Path) -> Path:
    """Make ``path`` and any missing parents, each 0700 whatever the umask.

    Directories that exist already are left as they are: they are the user's.
    """
    missing: list[Path] = []
    p = path
    while not p.is_dir():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            if not d.is_dir():
                raise
            continue  # made meanwhile by another process: theirs to set
        os.chmod(d, 0o700)  # mkdir's mode is masked by the umask
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty and 0600 if it does not exist (its dir 0700); keep it if it does."""
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path
    try:
        os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    return path


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` so that a reader sees the old file or the new one, never half of it."""
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
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
