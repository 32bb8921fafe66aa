"""Downloading a file, resumably and checked: the one way cglib fetches anything from the web.

:func:`download` streams a URL into ``<target>.part`` beside the target, with a progress bar.
If that ``.part`` is there from an earlier, interrupted run, it asks the server for the rest
only (an HTTP ``Range`` request); a server that sends the whole file instead (status 200, or
a ``file://`` URL) starts it again from zero. The finished file is checked against the size
the server announced, the ``size`` and the SHA-256 the caller expects, and only then renamed
to the target (:func:`cglib.files.move_into_place`): the target's name never holds half a
file. Standard library only (urllib); this module imports nothing of cglib but
:mod:`cglib.files`.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
from pathlib import Path
from typing import Any
from urllib.error import HTTPError
from urllib.request import Request, urlopen

from tqdm.auto import tqdm

from cglib import files

#: Seconds to wait for the server to answer or to send the next bytes.
TIMEOUT = 60

#: Bytes read and written at a time.
CHUNK = 1 << 20


def sha256_of(path: str | os.PathLike) -> str:
    """SHA-256 of the file at ``path``, as 64 lower-case hexadecimal digits."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while chunk := file.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def download(url: str, path: str | os.PathLike, *, sha256: str | None = None,
             size: int | None = None, description: str | None = None) -> Path:
    """Download ``url`` to ``path`` unless a file is there already; returns ``path``.

    ``sha256``: the expected SHA-256 (hexadecimal), ``size``: the expected length in bytes;
    both are checked when given, as is the length the server announces. ``description``
    labels the progress bar (default: the file's name). Parent folders are created.

    - A file already at ``path`` is kept (checked against ``size`` and ``sha256`` when given;
      a mismatch raises ValueError naming it).
    - Bytes go to ``<path>.part``. An interrupted download (a broken connection, Ctrl-C)
      keeps it and raises RuntimeError saying so; the next call resumes where it stopped.
    - A finished download whose length or SHA-256 is wrong is deleted, with a ValueError
      naming the URL, what was expected and what was found.
    - No connection, or an unreachable server or URL: RuntimeError naming the URL and
      ``path``, saying how to put the file there by hand.
    """
    path = Path(path)
    if path.is_file():
        _check_present(path, size, sha256)
        return path
    part = path.with_name(path.name + ".part")
    path.parent.mkdir(parents=True, exist_ok=True)
    _transfer(url, path, part, size, description or path.name)
    _check_download(url, part, size, sha256)
    return files.move_into_place(part, path)


def _check_present(path: Path, size: int | None, sha256: str | None) -> None:
    """Raise ValueError when the file already at ``path`` is not the one expected."""
    fix = "delete it to download it again, or put the right file there"
    found = path.stat().st_size
    if size is not None and found != size:
        raise ValueError(f"{path} is there already but holds {found:,} bytes, expected "
                         f"{size:,}; {fix}")
    if sha256 is not None and (digest := sha256_of(path)) != sha256.lower():
        raise ValueError(f"{path} is there already but has SHA-256 {digest}, expected "
                         f"{sha256.lower()}; {fix}")


def _transfer(url: str, path: Path, part: Path, size: int | None, description: str) -> None:
    """Bring ``part`` to the whole of ``url``'s content, resuming what it holds. Raises
    RuntimeError when the server cannot be reached or the transfer stops early."""
    offset = part.stat().st_size if part.is_file() else 0
    if size is not None and offset > size:  # longer than the file can be: start again
        offset = 0
    response, offset, total = _open(url, path, offset)
    if size is not None and total is not None and total != size:
        response.close()
        part.unlink(missing_ok=True)
        raise ValueError(f"{url} is {total:,} bytes long, expected {size:,}: not the file "
                         f"expected; nothing was kept at {path}")
    with response, open(part, "ab" if offset else "wb") as file, tqdm(
            total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
            desc=description) as progress:
        try:
            while chunk := _read(response, url, part, file.tell(), total):
                file.write(chunk)  # a full disk raises here, as itself
                progress.update(len(chunk))
        except KeyboardInterrupt:
            print(f"\ninterrupted: {part} keeps {file.tell():,} bytes; run again to resume",
                  file=sys.stderr)
            raise
        if total is not None and file.tell() < total:  # the server closed the connection
            raise RuntimeError(_broken_off(url, part, file.tell(), total, "connection closed"))


def _read(response: Any, url: str, part: Path, received: int, total: int | None) -> bytes:
    """The next chunk of ``response`` (empty at its end); a reset connection or a server gone
    silent raises RuntimeError saying that ``part`` keeps the ``received`` bytes."""
    try:
        return response.read(CHUNK)
    except OSError as error:
        raise RuntimeError(_broken_off(url, part, received, total, error)) from None


def _broken_off(url: str, part: Path, received: int, total: int | None, reason: object) -> str:
    of = f" of {total:,}" if total is not None else ""
    return (f"the download from {url} broke off ({reason}) after {received:,}{of} bytes; "
            f"{part} keeps them: run again to resume")


def _open(url: str, path: Path, offset: int) -> tuple[Any, int, int | None]:
    """Ask ``url`` for its bytes from ``offset`` on. Returns ``(response, offset, total)``:
    ``offset`` where the response's bytes start (0 when the server sends the whole file),
    ``total`` the file's whole length when the server announces it, else None."""
    request = Request(url, headers={"Range": f"bytes={offset}-"} if offset else {})
    try:
        response = urlopen(request, timeout=TIMEOUT)
    except HTTPError as error:
        if error.code == 416 and offset:  # the .part is no prefix of the file: start again
            return _open(url, path, 0)
        raise RuntimeError(_unreachable(url, path, f"HTTP {error.code} {error.reason}")) from None
    except OSError as error:  # URLError (no network, refused, unknown host) and timeouts
        raise RuntimeError(_unreachable(url, path, getattr(error, "reason", error))) from None
    if getattr(response, "status", None) == 206:
        start, total = _content_range(response.headers.get("Content-Range", ""))
        if start == offset:
            return response, offset, total
        response.close()
        return _open(url, path, 0)
    length = response.headers.get("Content-Length")
    return response, 0, int(length) if length else None


def _content_range(value: str) -> tuple[int | None, int | None]:
    """``"bytes 100-199/1000"`` -> (100, 1000); parts that are missing or ``*`` -> None."""
    match = re.fullmatch(r"\s*bytes\s+(\d+)-\d+/(\d+|\*)\s*", value)
    if match is None:
        return None, None
    return int(match[1]), None if match[2] == "*" else int(match[2])


def _unreachable(url: str, path: Path, reason: object) -> str:
    return (f"could not download {url} ({reason}); check the connection and run again, or, "
            f"offline, download it on another machine and put it at {path}")


def _check_download(url: str, part: Path, size: int | None, sha256: str | None) -> None:
    """Delete ``part`` and raise ValueError unless it has ``size`` bytes and SHA-256
    ``sha256`` (each when given)."""
    found = part.stat().st_size
    if size is not None and found != size:
        problem = f"{found:,} bytes, expected {size:,}"
    elif sha256 is not None and (digest := sha256_of(part)) != sha256.lower():
        problem = f"SHA-256 {digest}, expected {sha256.lower()}"
    else:
        return
    part.unlink()
    raise ValueError(f"the file downloaded from {url} has {problem}; it was deleted. Run "
                     "again to download it anew; if this repeats, the file at that address "
                     "has changed")
