"""cglib.download: resumable, checked downloads from a real HTTP server on 127.0.0.1."""

import errno
import hashlib
import io
import socket

import numpy as np
import pytest

from cglib import download

CONTENT = np.random.default_rng(0).integers(0, 256, 300_000, dtype=np.uint8).tobytes()
SHA256 = hashlib.sha256(CONTENT).hexdigest()


@pytest.fixture
def served(file_server):
    """The server holding CONTENT at /file.bin."""
    file_server.files["/file.bin"] = CONTENT
    return file_server


def test_download_checks_size_and_sha256_then_keeps_the_file(served, tmp_path):
    target = tmp_path / "sub" / "file.bin"
    url = served.url("/file.bin")
    assert download.download(url, target, sha256=SHA256, size=len(CONTENT)) == target
    assert target.read_bytes() == CONTENT
    assert sorted(path.name for path in target.parent.iterdir()) == ["file.bin"]
    assert download.download(url, target, sha256=SHA256) == target
    assert served.requests == [("/file.bin", None)]  # present: not downloaded again


def test_broken_off_download_keeps_the_part_and_resumes_with_a_range_request(served, tmp_path):
    target = tmp_path / "file.bin"
    served.break_after = 100_000
    with pytest.raises(RuntimeError, match=r"broke off .* after 100,000 of 300,000 bytes; "
                                           r".*file\.bin\.part keeps them: run again to resume"):
        download.download(served.url("/file.bin"), target, sha256=SHA256)
    assert not target.exists()
    assert (tmp_path / "file.bin.part").read_bytes() == CONTENT[:100_000]
    download.download(served.url("/file.bin"), target, sha256=SHA256)
    assert served.requests == [("/file.bin", None), ("/file.bin", "bytes=100000-")]
    assert target.read_bytes() == CONTENT
    assert not (tmp_path / "file.bin.part").exists()


def test_wrong_sha256_deletes_the_download(served, tmp_path):
    url = served.url("/file.bin")
    with pytest.raises(ValueError, match=rf"downloaded from {url} has SHA-256 {SHA256}, "
                                         rf"expected {'0' * 64}; it was deleted"):
        download.download(url, tmp_path / "file.bin", sha256="0" * 64)
    assert list(tmp_path.iterdir()) == []


def test_announced_length_other_than_the_expected_size_keeps_nothing(served, tmp_path):
    url = served.url("/file.bin")
    with pytest.raises(ValueError, match=rf"{url} is 300,000 bytes long, expected 299,999"):
        download.download(url, tmp_path / "file.bin", size=299_999)
    assert list(tmp_path.iterdir()) == []


def test_server_that_ignores_range_restarts_from_zero(served, tmp_path):
    (tmp_path / "file.bin.part").write_bytes(b"stale bytes of another file")
    served.ignore_range = True
    download.download(served.url("/file.bin"), tmp_path / "file.bin", sha256=SHA256)
    assert served.requests == [("/file.bin", "bytes=27-")]
    assert (tmp_path / "file.bin").read_bytes() == CONTENT


def test_part_longer_than_the_file_restarts(served, tmp_path):
    (tmp_path / "file.bin.part").write_bytes(CONTENT + b"more")
    download.download(served.url("/file.bin"), tmp_path / "file.bin", sha256=SHA256)
    assert served.requests == [("/file.bin", "bytes=300004-"), ("/file.bin", None)]  # 416
    assert (tmp_path / "file.bin").read_bytes() == CONTENT
    (tmp_path / "again.bin.part").write_bytes(CONTENT + b"more")
    download.download(served.url("/file.bin"), tmp_path / "again.bin", size=len(CONTENT))
    assert served.requests[-1] == ("/file.bin", None)  # longer than size: not even asked


def test_unreachable_server_names_the_url_and_the_path(tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/file.bin"
    target = tmp_path / "file.bin"
    with pytest.raises(RuntimeError, match=rf"could not download {url} \(.*refused.*\); .*"
                                           rf"offline, download it on another machine and put "
                                           rf"it at {target}"):
        download.download(url, target)
    assert list(tmp_path.iterdir()) == []


def test_missing_file_on_the_server_is_named(served, tmp_path):
    url = served.url("/nope.bin")
    with pytest.raises(RuntimeError, match=rf"could not download {url} \(HTTP 404"):
        download.download(url, tmp_path / "nope.bin")


def test_file_url_copies_the_whole_file(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(CONTENT)
    (tmp_path / "copy.bin.part").write_bytes(CONTENT[:10])  # no ranges there: copied whole
    target = download.download(source.as_uri(), tmp_path / "copy.bin", sha256=SHA256,
                               size=len(CONTENT))
    assert target.read_bytes() == CONTENT


def test_present_file_that_is_not_the_expected_one_is_named(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"something else")
    with pytest.raises(ValueError, match=rf"{target} is there already but has SHA-256 "
                                         rf"{hashlib.sha256(b'something else').hexdigest()}, "
                                         rf"expected {SHA256}; delete it"):
        download.download("http://127.0.0.1:9/unused", target, sha256=SHA256)
    with pytest.raises(ValueError, match=r"holds 14 bytes, expected 300,000"):
        download.download("http://127.0.0.1:9/unused", target, size=len(CONTENT))
    assert target.read_bytes() == b"something else"


def test_ctrl_c_keeps_the_part_and_says_that_running_again_resumes(served, tmp_path,
                                                                    monkeypatch, capsys):
    class Interrupted(download.tqdm):
        def update(self, n=1):
            raise KeyboardInterrupt

    monkeypatch.setattr(download, "CHUNK", 65_536)
    monkeypatch.setattr(download, "tqdm", Interrupted)
    with pytest.raises(KeyboardInterrupt):
        download.download(served.url("/file.bin"), tmp_path / "file.bin")
    part = tmp_path / "file.bin.part"
    assert part.read_bytes() == CONTENT[:65_536]
    assert f"interrupted: {part} keeps 65,536 bytes; run again to resume" in \
        capsys.readouterr().err
    monkeypatch.undo()
    download.download(served.url("/file.bin"), tmp_path / "file.bin", sha256=SHA256)
    assert served.requests[-1] == ("/file.bin", "bytes=65536-")


def test_a_full_disk_is_reported_as_itself_not_as_a_broken_connection(served, tmp_path,
                                                                      monkeypatch):
    class FillsUp(io.FileIO):
        def write(self, data):
            if self.tell() + len(data) > 100_000:
                raise OSError(errno.ENOSPC, "No space left on device", self.name)
            return super().write(data)

    monkeypatch.setattr(download, "open", FillsUp, raising=False)
    with pytest.raises(OSError) as raised:
        download.download(served.url("/file.bin"), tmp_path / "file.bin", sha256=SHA256)
    assert raised.value.errno == errno.ENOSPC and not isinstance(raised.value, RuntimeError)
    assert not (tmp_path / "file.bin").exists()
