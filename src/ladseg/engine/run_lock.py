"""One writer per run folder: ``ladseg train`` holds an exclusive lock on ``run.work_dir/.lock``.

Two runs writing one folder delete each other's temporary checkpoints and interleave their
records in ``metrics.jsonl``, so a second run on a folder in use is refused with the pid of the
one that holds it. The lock is an ``flock`` on an open file: the kernel drops it when its process
ends in any way, SIGKILL included, so a killed run's folder is never left locked (the file itself
stays, harmlessly). Where ``fcntl`` does not exist (Windows) the folder is not locked.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import TracebackType

from ladseg.errors import LadsegError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

LOCK_NAME = ".lock"


class RunFolderInUse(LadsegError):
    """Another process is training into the same run folder."""


class RunFolderLock:
    """``with RunFolderLock(work_dir):`` -- hold the folder for this process, or raise :class:`RunFolderInUse`."""

    def __init__(self, work_dir: str | Path) -> None:
        self.path = Path(work_dir) / LOCK_NAME
        self.fd: int | None = None

    def acquire(self) -> None:
        if fcntl is None or self.fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_pid(fd)
            os.close(fd)
            who = f"process {holder}" if holder else "another process"
            raise RunFolderInUse(
                f"run.work_dir {self.path.parent} is in use by {who} (another 'ladseg train' writing "
                "there); wait for it to end or stop it, or give this run another run.work_dir"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing the file drops the lock
            self.fd = None

    def __enter__(self) -> RunFolderLock:
        self.acquire()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()


def _read_pid(fd: int) -> int | None:
    """The pid the lock holder wrote (None while it has not written it yet)."""
    try:
        text = os.pread(fd, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return int(text) if text.isdigit() else None
