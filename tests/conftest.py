"""Fixtures shared by several test files, and the guard that keeps the whole run (notebooks
under nbval included) out of the user's home and caches."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

#: cglib's folders (cglib.env.Paths), pointed at the run's temporary folder.
CGLIB_FOLDERS = ("CGLIB_HOME", "CGLIB_DATA_DIR", "CGLIB_RUNS_DIR", "CGLIB_CACHE_DIR")


def pytest_configure(config):
    """Before any test or notebook runs, point HOME, XDG_CACHE_HOME and every cglib folder at
    a temporary folder, removed at the end: nothing a test does (a download, an archive
    extracted, a demo data set, a run) lands in the user's home, cache or checkout. Set in
    ``os.environ`` so that the kernels nbval starts inherit it. The read-only folders that CI
    shares between checkouts, ``CGLIB_WEIGHTS_DIR`` and ``CGLIB_REFERENCE_DIR``, are kept
    when set, and torch's hub cache (VGG-19 weights, only read) stays where it was."""
    root = Path(tempfile.mkdtemp(prefix="cglib-tests-"))
    # removed at exit, after what registers later (IPython closes its history file there)
    atexit.register(shutil.rmtree, root, ignore_errors=True)
    os.environ.setdefault("TORCH_HOME", str(Path(torch.hub.get_dir()).parent))
    os.environ["HOME"] = str(root / "home")
    (root / "home").mkdir()  # a home that exists, as tools writing dot folders expect
    os.environ["XDG_CACHE_HOME"] = str(root / "home" / ".cache")
    for name in CGLIB_FOLDERS:
        os.environ[name] = str(root / name.lower())
    os.environ.setdefault("CGLIB_WEIGHTS_DIR", str(root / "weights"))


def write_dataset(root, size=32, counts=None, seed=0):
    """A tiny data set of smooth random colour images in the cglib layout; returns ``root``."""
    counts = counts or {"photos": 6, "photos_test": 2, "cartoons": 6, "cartoons_smoothed": 6}
    rng = np.random.default_rng(seed)
    for domain, count in counts.items():
        folder = root / domain
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            image = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(folder / f"{index:03d}.png"), image)
    return root


@pytest.fixture
def tiny_dataset(tmp_path):
    """A data set root with 6 photos, 2 test photos, 6 cartoons and 6 smoothed, 32x32."""
    return write_dataset(tmp_path / "data")


class FileServer:
    """A real HTTP server on 127.0.0.1 (a free port) serving ``files`` (URL path -> bytes) from
    a thread, with byte ranges (``Range: bytes=N-`` -> 206) the way release downloads are
    served. ``requests`` records (path, Range header or None) per request. ``break_after``:
    the next response stops after that many bytes of its body and closes the connection.
    ``ignore_range``: answer every request with the whole file (status 200)."""

    def __init__(self):
        import http.server
        import threading

        self.files, self.requests = {}, []
        self.break_after, self.ignore_range = None, False
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                wanted = self.headers.get("Range")
                server.requests.append((self.path, wanted))
                if self.path not in server.files:
                    self.send_error(404)
                    return
                content = server.files[self.path]
                start = int(wanted[6:-1]) if wanted and not server.ignore_range else None
                if start is not None and start >= len(content):
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(content)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = content[start or 0:]
                if start is None:
                    self.send_response(200)
                else:
                    self.send_response(206)
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(content) - 1}/{len(content)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if server.break_after is not None:
                    body, server.break_after = body[:server.break_after], None
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path):
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def file_server():
    """A :class:`FileServer`, shut down after the test."""
    server = FileServer()
    yield server
    server.close()


@pytest.fixture
def disk_full_at(monkeypatch):
    """``disk_full_at(n)``: from then on, the n-th file written through
    ``cglib.files.write_bytes`` fails as on a full disk (ENOSPC); the others are written."""
    import errno

    from cglib import files

    def fill(count: int) -> None:
        write, calls = files.write_bytes, []

        def fills_up(path, content, durable=True):
            calls.append(path)
            if len(calls) == count:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
            return write(path, content, durable)

        monkeypatch.setattr(files, "write_bytes", fills_up)

    return fill


@pytest.fixture
def sigterm_in_test():
    """While the test runs, a SIGTERM that cglib does not handle fails the test (an
    AssertionError where it arrives) instead of ending pytest; the handler is put back after.
    Yields that handler, to check that cglib put it back too."""
    import signal

    def unhandled(number, frame):
        raise AssertionError("SIGTERM reached the test: cglib did not handle it")

    previous = signal.signal(signal.SIGTERM, unhandled)
    yield unhandled
    signal.signal(signal.SIGTERM, previous)


@pytest.fixture
def released_weights():
    """A function: a released style -> its generator's file in ``CGLIB_WEIGHTS_DIR``; the test
    calling it is skipped, saying why, where that file is absent."""
    def find(style):
        folder = os.environ.get("CGLIB_WEIGHTS_DIR")
        path = Path(folder or ".") / f"cartoongan-{style}.pth"
        if not folder or not path.is_file():
            pytest.skip(f"needs the official {style} weights: set CGLIB_WEIGHTS_DIR to a folder "
                        f"holding cartoongan-{style}.pth")
        return path

    return find


@pytest.fixture(scope="module")
def narrow():
    """A narrow generator in the official layout (width 8), random weights: fast, and exactly
    the authors' network."""
    from cglib import authors, pretrained

    return pretrained.from_official(authors.random_state(seed=1, width=8)).eval()


@pytest.fixture
def narrow_file(tmp_path, narrow):
    """``narrow`` saved as a generator file."""
    from cglib import pretrained

    return pretrained.save_generator(narrow, tmp_path / "narrow.pt")
