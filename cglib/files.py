"""Files cglib writes: atomically, never over something by accident, and with errors a person
can act on.

Every file cglib writes (images, checkpoints, generators, JSON, downloads, videos) is written
atomically: :func:`atomic_write` sends the bytes to a hidden temporary file beside the target,
which is renamed over the target only once it is complete, so an interrupted job or a full
disk never leaves half a file under the final name. A writer that opens files by name (FFmpeg,
for videos) gets the temporary's name from :func:`atomic_path`; a file written in pieces over
several runs (a resumable download) is renamed into place whole by :func:`move_into_place`.
Every temporary name comes from :func:`temporary_name` (``.<name>.<pid>.<hex>.tmp``, a file
or a folder), so that the next run of a job removes what a killed process left behind
(:func:`sweep_temporaries`). SIGTERM (what ``timeout``, Docker, Slurm and Colab send) stops a
job like Ctrl-C (:func:`terminate_as_interrupt`: :class:`Terminated`, exit status 143).
:func:`output_folder` checks an output folder and :func:`refuse_existing` an output file
before any work starts, and
:func:`explain_os_error` turns a file-system error into one line saying what, where and what
to do. This module imports nothing of cglib.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import secrets
import shutil
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike, mode: str = "wb", durable: bool = True
                 ) -> Iterator[IO]:
    """Open a temporary file beside ``path`` for writing (``mode``: ``"wb"`` or ``"w"``); when
    the block ends without an error, rename it over ``path``; on any error (a full disk,
    Ctrl-C) delete it and leave ``path`` as it was.

    Parent folders are created; permissions follow the umask. Readers see the old file or the
    new one, never a part. ``durable``: also flush the file and the rename to the disk, so that
    they survive a power cut (checkpoints; costs a few milliseconds, so image files skip it)::

        with atomic_write(run / "config.json", "w") as file:
            json.dump(config, file)
    """
    if mode not in ("wb", "w"):
        raise ValueError(f"mode={mode!r}: atomic_write opens files for writing ('wb' or 'w')")
    path = Path(path)
    temporary, descriptor = _create_temporary(path)
    try:
        with os.fdopen(descriptor, mode, **({"encoding": "utf-8"} if mode == "w" else {})) as file:
            yield file
            if durable:
                file.flush()
                os.fsync(file.fileno())
        _replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if durable:
        _sync_folder(path.parent)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """:func:`atomic_write` for writers that open files by name (FFmpeg, which reopens an MP4
    to move its index to the front): a new empty temporary file beside ``path``, whose name
    the block writes to; moved over ``path`` (:func:`move_into_place`, durable) when the block
    ends without an error, deleted on any error.
    """
    path = Path(path)
    temporary, descriptor = _create_temporary(path)
    os.close(descriptor)
    try:
        yield temporary
        move_into_place(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _create_temporary(path: Path) -> tuple[Path, int]:
    """A new hidden file beside ``path`` (parent folders created), and its descriptor open for
    writing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = temporary_name(path)
    try:
        return temporary, os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as error:
        raise _about(error, path) from None


def _replace(temporary: Path, path: Path) -> None:
    """Rename the finished ``temporary`` over ``path``; an error names ``path``."""
    try:
        os.replace(temporary, path)
    except OSError as error:
        raise _about(error, path) from None


def _about(error: OSError, path: Path) -> OSError:
    """``error``, met on the hidden temporary of ``path``, as the same error about ``path``:
    messages name the file the caller asked for (a name too long, a folder in the way, no
    permission), never the temporary."""
    return OSError(error.errno, error.strerror, str(path))


#: A name made by :func:`temporary_name`; the group is the process id.
_TEMPORARY = re.compile(r"\..+\.(\d+)\.[0-9a-f]{8}\.tmp")


def temporary_name(path: str | os.PathLike) -> Path:
    """A new hidden name beside ``path`` for a file or folder being made:
    ``.<name>.<pid>.<8 hex digits>.tmp``, which :func:`sweep_temporaries` recognises."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` runs on this machine (this one included). On Windows, where
    asking would end the process, every process counts as alive."""
    if pid == os.getpid() or os.name == "nt":
        return True
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # gone, or no process id at all
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_temporaries(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporaries (:func:`temporary_name`: files and folders) in ``folder`` whose
    process is gone: what a job killed by SIGKILL or a power cut left behind. Those of running
    processes are kept (another job may be writing them). Returns the paths deleted; a
    missing folder holds none."""
    try:
        entries = list(os.scandir(folder))
    except (FileNotFoundError, NotADirectoryError):
        return []
    swept = []
    for entry in entries:
        match = _TEMPORARY.fullmatch(entry.name)
        if match is None or _alive(int(match[1])):
            continue
        path = Path(entry.path)
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        swept.append(path)
    return swept


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived (``timeout``, ``kill``, Docker, Slurm, Colab stopping a job): handled as
    Ctrl-C is, finished outputs kept. ``signal`` is the signal's number, for the exit status
    (:func:`exit_status`)."""

    signal = signal.SIGTERM


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """The shell's exit status for a job stopped by ``interrupt``: 128 + the signal's number,
    130 for Ctrl-C (SIGINT), 143 for SIGTERM. An interrupt records its signal in ``signal``
    (:class:`Terminated`); one without came from Ctrl-C."""
    return 128 + int(getattr(interrupt, "signal", signal.SIGINT))


@contextlib.contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises :class:`Terminated` (a KeyboardInterrupt) where
    the program is, as Ctrl-C raises KeyboardInterrupt: atomic writes delete their temporary,
    jobs print what they finished. Only the main thread can catch signals; elsewhere the
    block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(number: int, frame: object) -> None:
        raise Terminated("terminated (SIGTERM): finished outputs are kept; run the same "
                         "command again to continue")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _sync_folder(folder: Path) -> None:
    """Make a rename in ``folder`` durable; not every file system allows opening a folder."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def write_bytes(path: str | os.PathLike, content: bytes, durable: bool = True) -> Path:
    """Write ``content`` to ``path`` with :func:`atomic_write`; returns ``path``."""
    with atomic_write(path, durable=durable) as file:
        file.write(content)
    return Path(path)


def move_into_place(source: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Rename the finished file ``source`` over ``path`` (same file system; parent folders of
    ``path`` are created), after flushing its bytes to the disk: readers of ``path`` see the
    old file or the whole new one, never a part, and a power cut loses neither.

    For files written in pieces over several runs, such as a resumable download's ``.part``,
    where one :func:`atomic_write` block does not fit. Returns ``path``.
    """
    path = Path(path)
    with open(source, "ab") as file:
        os.fsync(file.fileno())
    path.parent.mkdir(parents=True, exist_ok=True)
    _replace(Path(source), path)
    _sync_folder(path.parent)
    return path


def write_json(path: str | os.PathLike, value: Any, indent: int = 1, sort_keys: bool = False
               ) -> Path:
    """Write ``value`` as JSON indented by ``indent`` spaces, keys in the order given (or
    sorted: ``sort_keys``), with :func:`atomic_write`; returns ``path``."""
    with atomic_write(path, "w") as file:
        file.write(json.dumps(value, indent=indent, sort_keys=sort_keys) + "\n")
    return Path(path)


def refuse_existing(path: str | os.PathLike, overwrite: bool) -> None:
    """FileExistsError naming ``path`` and the fix when something is there already (a broken
    link included) and not ``overwrite``; for checks before any work."""
    if not overwrite and os.path.lexists(path):
        raise FileExistsError(f"{path} exists already; pass overwrite=True (--overwrite on the "
                              "command line) to replace it, or choose another name")


def unused_path(path: str | os.PathLike) -> Path:
    """``path`` if nothing is there, else the first of ``<stem>-2<suffix>``,
    ``<stem>-3<suffix>``, ... that is free: a new name that keeps what is there."""
    path = Path(path)
    number = 1
    found = path
    while os.path.lexists(found):
        number += 1
        found = path.with_name(f"{path.stem}-{number}{path.suffix}")
    return found


def output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """``path`` as an absolute folder, created if missing, checked before any work starts.

    Raises NotADirectoryError when ``path`` (or one of its parents) is an existing file, and
    PermissionError when the folder cannot be written to, each naming ``what`` and the fix.
    """
    path = Path(path).expanduser()
    for candidate in (path, *path.parents):
        if candidate.exists() and not candidate.is_dir():
            raise NotADirectoryError(
                f"the {what} {path} cannot be made: {candidate} is a file; give a folder "
                "that does not exist yet or is a folder")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except PermissionError:
        raise PermissionError(f"the {what} {path} cannot be created: permission denied; "
                              "choose a folder you can write to") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise PermissionError(f"the {what} {path} is not writable; choose a folder you can "
                              "write to")
    return path.resolve()


def describe_missing(path: str | os.PathLike) -> str:
    """Why ``path`` cannot be opened, in a few words: ``"does not exist"``, ``"is a broken
    symbolic link"``, ``"is a symbolic link loop"``, ``"is a folder"``, ``"is a file"``."""
    path = Path(path)
    try:
        path.stat()
    except OSError as error:
        if error.errno == errno.ELOOP:
            return "is a symbolic link loop"
        if path.is_symlink():
            return f"is a broken symbolic link (to {os.readlink(path)})"
        if error.errno == errno.EACCES:
            return "cannot be read (permission denied)"
        return "does not exist"
    return "is a folder" if path.is_dir() else "is a file"


def shared_names(sources: list[Path], names: list[str]) -> list[bool]:
    """For each source file, whether another source (not the same file) would get its output
    ``name``: those then keep their suffix in the name (``x.jpg`` and ``x.png`` give
    ``x-jpg`` and ``x-png``), so that no output overwrites another."""
    holders: dict[str, set[Path]] = {}
    for source, name in zip(sources, names, strict=True):
        holders.setdefault(name, set()).add(Path(source).resolve())
    return [len(holders[name]) > 1 for name in names]


#: Errors of the device, not of one file: a job that meets one stops (every other write
#: would fail alike) rather than report each file.
DEVICE_ERRORS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})


#: What to do about the file-system errors a user can cause and fix.
_FIXES = {
    errno.ENOSPC: "no space left on the device; free some space (or choose another folder) "
                  "and run again: finished outputs are kept",
    errno.EDQUOT: "the disk quota is exceeded; free some space and run again: finished "
                  "outputs are kept",
    errno.EACCES: "permission denied; choose a folder you can write to",
    errno.EROFS: "the file system is read-only; choose another folder",
    errno.ENOTDIR: "a part of the path is a file, not a folder; choose another path",
    errno.EISDIR: "it is a folder; give a file name",
    errno.EEXIST: "it exists already; choose another name",
    errno.ENAMETOOLONG: "the name is too long; choose a shorter path",
}


def write_rejection(error: OSError, path: str | os.PathLike) -> str:
    """Why the output ``path`` was not written, as one line for a job's report of rejected
    inputs. A device's error (:data:`DEVICE_ERRORS`: full, over quota, read-only) is raised
    again instead: every other write would fail alike, so the job stops."""
    if error.errno in DEVICE_ERRORS:
        raise error
    return f"could not write {path}: {_FIXES.get(error.errno) or error.strerror or error}"


def explain_os_error(error: OSError) -> str:
    """One line for a file-system error: what failed, where, and what to do. Used by the
    command line instead of a traceback."""
    where = f" ({error.filename})" if error.filename else ""
    fix = _FIXES.get(error.errno)
    if fix is None:
        return f"{error.strerror or error}{where}"
    return f"{fix}{where}"
