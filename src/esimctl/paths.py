"""Every path esimctl uses, in one place.

``ESIMCTL_HOME`` puts everything under one directory (tests, scripts, the demo profile);
otherwise platformdirs gives the user's config, data, cache, state and log dirs.
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
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        return path


def atomic_write(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write ``data`` so that a reader sees the old file or the new one, never half of it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
