"""Atomic, durable file writes: a temporary file in the target's folder,
flushed and fsynced, given the user's umask, renamed over the target with
`os.replace`, then the folder fsynced so the rename itself survives a power
cut. A process killed at any moment leaves either the old file or the new
one at `path`, never a mixture; its temporary file is removed by the next
write to the same path.
"""

from __future__ import annotations

import glob
import os
import secrets
from typing import BinaryIO, Callable

import jax

__all__ = ["write_atomic", "temp_files", "remove_stale"]

_TEMP = ".{name}.{pid}.{tag}.tmp"


def _umask() -> int:
    """The process's umask, read without changing it where Linux allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)  # elsewhere: set and restore (not thread-safe, but only there)
    os.umask(old)
    return old


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def temp_files(path: str, name: str | None = None) -> list[str]:
    """The temporary files of writes to the file `path` still on disk; with
    `name="*"`, `path` is a folder and every write's temporary files in it count."""
    if name is None:
        folder, name = os.path.split(os.path.abspath(path))
        name = glob.escape(name)
    else:
        folder = os.path.abspath(path)
    return sorted(glob.glob(os.path.join(glob.escape(folder), f".{name}.*.tmp")))


def remove_stale(path: str, name: str | None = None) -> None:
    """Delete the temporary files (of `temp_files(path, name)`) whose writer
    process has died (SIGKILL, power cut); a live writer's are left alone."""
    for tmp in temp_files(path, name):
        try:
            pid = int(os.path.basename(tmp).rsplit(".", 3)[-3])
        except (ValueError, IndexError):
            continue
        if not _alive(pid):
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass


def _fsync_folder(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # a platform that cannot open folders (Windows): the rename is what it is
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_atomic(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> None:
    """Write a file at `path` through `write(f)` so that it appears whole or not at all.

    Args:
        path: the file to create or replace; its folder must exist.
        write: called once with the temporary file opened for binary writing
            (it may seek); an exception leaves `path` untouched.

    Examples:
        >>> import os, tempfile
        >>> from fluxlike.saving._atomic import write_atomic
        >>> p = os.path.join(tempfile.mkdtemp(), "a.bin")
        >>> write_atomic(p, lambda f: f.write(b"hello"))
        >>> open(p, "rb").read()
        b'hello'
    """
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"cannot write {path}: the folder {folder} does not exist")
    remove_stale(path)
    tmp = os.path.join(folder, _TEMP.format(name=name, pid=os.getpid(), tag=secrets.token_hex(4)))
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


def primary() -> bool:
    """Whether this process writes files: the only one, or process 0 of a
    `jax.distributed` run (the others take part in the gathers and wait)."""
    return jax.process_count() == 1 or jax.process_index() == 0


def barrier(tag: str) -> None:
    """With several processes, wait until all of them reach this point with
    `tag` (after process 0 wrote a file, so that none reads it too soon)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(tag)
