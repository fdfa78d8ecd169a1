"""A kernel advisory lock in the state dir that keeps renewals from overlapping.

``flock`` is released by the kernel on any exit, SIGKILL included, so a crashed run never
leaves a stale lock behind (unlike a PID file). The second run fails at once with exit 75,
or waits up to ``wait`` seconds. The holder writes its PID in the file, so the message
can say which process holds it.
"""

from __future__ import annotations

import fcntl
import math
import os
import time
from pathlib import Path
from types import TracebackType

from esimctl.errors import InvalidInput, LockHeld
from esimctl.paths import private_dir


def _holder(fd: int) -> str:
    try:
        pid = os.pread(fd, 32, 0).decode("ascii").strip()
    except (OSError, UnicodeDecodeError):
        return ""
    return f"pid {pid}, " if pid.isdigit() else ""


class RenewLock:
    """``with RenewLock(paths.lock_file, wait=0):`` around everything that may buy."""

    def __init__(self, path: Path, *, wait: float = 0.0) -> None:
        if not math.isfinite(wait) or wait < 0:
            raise InvalidInput(f"invalid --wait {wait!r}: use a number of seconds, 0 or more")
        self.path = path
        self.wait = wait
        self.fd: int | None = None

    def __enter__(self) -> RenewLock:
        private_dir(self.path.parent)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)  # the umask is 077 (main)
        deadline = time.monotonic() + self.wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = _holder(fd)
                    os.close(fd)
                    raise LockHeld(
                        f"another esimctl renewal is running ({holder}lock {self.path}); "
                        "retry later or pass --wait SECONDS"
                    ) from None
                time.sleep(0.2)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None
