"""cglib.animegan: AnimeGAN's dataset-1 laid out as a cglib data set, from a small archive with
the same layout, served by a real HTTP server on 127.0.0.1 or as a file:// URL."""

import hashlib
import json
import os
import socket
import stat
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest

from cglib import animegan, env
from cglib.__main__ import main
from cglib.edges import smooth_edges
from cglib.images import read_fitted, read_image

#: Images per folder of the test archive; only the first three kinds are used by fetch.
LAYOUT = {"train_photo": 5, "test/test_photo": 3, "Hayao/style": 4, "Shinkai/style": 3,
          "Paprika/style": 2, "SummerWar/style": 2, "Hayao/smooth": 4, "Shinkai/smooth": 3,
          "Paprika/smooth": 2, "SummerWar/smooth": 2, "val": 2, "test/real": 2,
          "test/label_map": 1}


def picture(seed, height=40, width=56):
    small = np.random.default_rng(seed).integers(0, 256, (4, 5, 3), dtype=np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def write_archive(path, skip=(), extra=()):
    """A zip with dataset-1's layout (folder entries included): LAYOUT's count of images per
    folder, JPEGs and PNGs in turn, plus a text file posing as a photo; ``skip``: folders
    left out, ``extra``: (name, bytes) entries added. Returns ``path``."""
    with zipfile.ZipFile(path, "w") as bundle:
        for number, (folder, count) in enumerate(LAYOUT.items()):
            if folder in skip:
                continue
            bundle.writestr(f"{folder}/", b"")
            for index in range(count):
                suffix = (".jpg", ".png")[index % 2]
                encoded = cv2.imencode(suffix, picture(number * 10 + index))[1].tobytes()
                bundle.writestr(f"{folder}/{index}{suffix}", encoded)
        if "train_photo" not in skip:
            bundle.writestr("train_photo/notes.jpg", b"not a picture")
        for name, content in extra:
            bundle.writestr(name, content)
    return path


@pytest.fixture
def cache(tmp_path, monkeypatch):
    """The cache folder (CGLIB_CACHE_DIR) of this test."""
    monkeypatch.setenv("CGLIB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def archive(tmp_path):
    return write_archive(tmp_path / "dataset.zip")


def stamps(folder):
    return {path.relative_to(folder).as_posix(): (path.stat().st_mtime_ns, path.read_bytes())
            for path in sorted(folder.rglob("*")) if path.is_file()}


def test_fetch_lays_out_the_four_domains_and_writes_the_manifest(cache, archive, tmp_path):
    out = tmp_path / "hayao"
    manifest = animegan.fetch("Hayao", out, url=archive.as_uri(), size=32, workers=1)
    assert manifest["counts"] == {"photos": 5, "photos_test": 3, "cartoons": 4,
                                  "cartoons_smoothed": 4}
    assert json.loads((out / "manifest.json").read_text()) == manifest
    assert manifest["source"] == archive.as_uri()
    assert manifest["archive"] == {"sha256": hashlib.sha256(archive.read_bytes()).hexdigest(),
                                   "bytes": archive.stat().st_size}
    assert (manifest["style"], manifest["size"], manifest["terms"]) == (
        "hayao", 32, animegan.TERMS)
    assert manifest["folders"] == {"photos": "train_photo", "photos_test": "test/test_photo",
                                   "cartoons": "Hayao/style"}
    assert manifest["rejected"] == {
        "train_photo/notes.jpg": "not an image (it holds text: 'not a picture')"}
    kept = animegan.archive_file(archive.as_uri())
    assert kept.parent.parent == cache / "animegan" and kept.read_bytes() == archive.read_bytes()

    for domain in ("photos", "photos_test", "cartoons", "cartoons_smoothed"):
        assert all(read_image(path).shape == (32, 32, 3) for path in (out / domain).iterdir())
    extracted = kept.with_name("dataset")
    cartoon = read_image(out / "cartoons" / "1.png")
    np.testing.assert_array_equal(cartoon, read_fitted(extracted / "Hayao/style/1.png", 32))
    np.testing.assert_array_equal(read_image(out / "cartoons_smoothed" / "1.png"),
                                  smooth_edges(cartoon))
    assert sorted(path.name for path in (out / "photos_test").iterdir()) == \
        ["0.png", "1.png", "2.png"]


def test_second_fetch_downloads_extracts_and_writes_nothing(cache, archive, tmp_path,
                                                            file_server, monkeypatch):
    file_server.files["/dataset.zip"] = archive.read_bytes()
    url, out = file_server.url("/dataset.zip"), tmp_path / "set"
    first = animegan.fetch("shinkai", out, url=url, size=32, workers=1)
    before = stamps(out)

    def no_extraction(*args):
        raise AssertionError("extracted again")

    monkeypatch.setattr(animegan, "_extract_member", no_extraction)
    assert animegan.fetch("SHINKAI", out, url=url, size=32, workers=1) == first
    after = stamps(out)
    assert after.pop("manifest.json")[1] == before.pop("manifest.json")[1]  # same content
    assert after == before  # no image written again
    assert file_server.requests == [("/dataset.zip", None)]  # downloaded once


def test_fetch_interrupted_while_laying_out_resumes(cache, archive, tmp_path, monkeypatch):
    def interrupted(*args):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:  # undo() would also undo the cache fixture's folder
        patch.setattr(animegan.data, "smooth_folder", interrupted)
        with pytest.raises(KeyboardInterrupt):
            animegan.fetch("hayao", tmp_path / "set", url=archive.as_uri(), size=32, workers=1)
    assert len(list((tmp_path / "set" / "cartoons").iterdir())) == 4
    manifest = animegan.fetch("hayao", tmp_path / "set", url=archive.as_uri(), size=32,
                              workers=1)
    assert manifest["counts"]["cartoons_smoothed"] == 4


def test_another_style_into_the_same_folder_is_refused(cache, archive, tmp_path):
    out = tmp_path / "set"
    animegan.fetch("hayao", out, url=archive.as_uri(), size=32, workers=1)
    with pytest.raises(ValueError, match=rf"{out} holds hayao cartoons; fetching paprika there "
                                         rf"would mix two styles.*--out.*animegan-paprika"):
        animegan.fetch("paprika", out, url=archive.as_uri(), size=32, workers=1)
    other = animegan.fetch("paprika", tmp_path / "animegan-paprika", url=archive.as_uri(),
                           size=32, workers=1)
    assert other["counts"]["cartoons"] == 2

    own = tmp_path / "own"
    (own / "cartoons").mkdir(parents=True)
    cv2.imwrite(str(own / "cartoons" / "mine.png"), picture(0))
    with pytest.raises(ValueError, match="holds cartoons that were not fetched from dataset-1"):
        animegan.fetch("hayao", own, url=archive.as_uri(), size=32, workers=1)


def test_unknown_style_lists_the_styles_before_any_download(cache, archive, tmp_path):
    with pytest.raises(ValueError, match=r"style 'ghibli' is not in AnimeGAN's dataset-1; use "
                                         r"one of hayao, shinkai, paprika, summerwar"):
        animegan.fetch("ghibli", tmp_path / "set", url=archive.as_uri())
    assert not cache.exists()


def test_archive_without_a_folder_fails_naming_it_and_lays_out_nothing(cache, tmp_path):
    archive = write_archive(tmp_path / "dataset.zip", skip={"test/test_photo", "test/real",
                                                            "test/label_map"})
    out = tmp_path / "set"
    with pytest.raises(ValueError, match=r"does not have the layout of AnimeGAN's dataset-1: "
                                         r"missing or without images: test/test_photo/ \(its "
                                         r"top level holds Hayao/, .* train_photo/, val/\)"):
        animegan.fetch("hayao", out, url=archive.as_uri(), size=32, workers=1)
    assert list(out.iterdir()) == []


def test_interrupted_extraction_leaves_no_folder_under_the_final_name(cache, archive, tmp_path,
                                                                      monkeypatch):
    extract_member, calls = animegan._extract_member, []

    def interrupted(*args):
        calls.append(args[1].filename)
        if len(calls) == 5:
            raise KeyboardInterrupt
        extract_member(*args)

    with monkeypatch.context() as patch:  # undo() would also undo the cache fixture's folder
        patch.setattr(animegan, "_extract_member", interrupted)
        with pytest.raises(KeyboardInterrupt):
            animegan.fetch("hayao", tmp_path / "set", url=archive.as_uri(), size=32, workers=1)
    kept = animegan.archive_file(archive.as_uri())
    assert sorted(path.name for path in kept.parent.iterdir()) == ["dataset.zip"]
    manifest = animegan.fetch("hayao", tmp_path / "set", url=archive.as_uri(), size=32,
                              workers=1)
    assert manifest["counts"]["photos"] == 5


def test_entry_that_would_escape_the_folder_is_refused(cache, tmp_path):
    archive = write_archive(tmp_path / "dataset.zip", extra=[("../escaped.txt", b"x")])
    with pytest.raises(ValueError, match=r"holds the entry '\.\./escaped\.txt', which would be "
                                         r"written outside"):
        animegan.fetch("hayao", tmp_path / "set", url=archive.as_uri(), size=32, workers=1)
    kept = animegan.archive_file(archive.as_uri())
    assert sorted(path.name for path in kept.parent.iterdir()) == ["dataset.zip"]
    assert not list(tmp_path.rglob("escaped.txt"))


def test_a_link_in_the_archive_is_refused_as_a_link(cache, tmp_path):
    """A symbolic link entry, then an entry under it: refused at the link, named as one."""
    link = zipfile.ZipInfo("links/photos")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    archive = write_archive(tmp_path / "dataset.zip",
                            extra=[(link, b"/etc"), ("links/photos/0.jpg", b"x")])
    with pytest.raises(ValueError) as caught:
        animegan.fetch("hayao", tmp_path / "set", url=archive.as_uri(), size=32, workers=1)
    kept = animegan.archive_file(archive.as_uri())
    assert str(caught.value).startswith(f"{kept} holds the entry 'links/photos', a symbolic "
                                        "link; ")
    assert kept.is_relative_to(cache) and [p.name for p in kept.parent.iterdir()] == [kept.name]


def test_damaged_archive_is_named_with_the_fix(cache, tmp_path):
    damaged = tmp_path / "dataset.zip"
    damaged.write_bytes(b"PK\x03\x04 but nothing after")
    with pytest.raises(ValueError, match=r"dataset\.zip is damaged or not a zip archive .*"
                                         r"delete it and run again"):
        animegan.fetch("hayao", tmp_path / "set", url=damaged.as_uri(), size=32, workers=1)


def test_offline_error_says_where_to_put_the_archive(cache, tmp_path):
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}/dataset.zip"
    with pytest.raises(RuntimeError, match=rf"could not download {url} .* put it at "
                                           rf"{animegan.archive_file(url)}; or give a "
                                           r"mirror's copy: data fetch animegan --url "
                                           r"URL_OR_FILE"):
        animegan.fetch("hayao", tmp_path / "set", url=url)


def test_command_line_takes_a_copy_of_the_archive_by_its_path(cache, archive, tmp_path,
                                                              capsys):
    out = tmp_path / "summerwar"
    assert main(["data", "fetch", "animegan", "--style", "summerwar", "--out", str(out),
                 "--size", "32", "--workers", "1", "--url", str(archive)]) == 0
    printed = capsys.readouterr().out
    assert "skipped train_photo/notes.jpg: not an image" in printed
    assert f"{out}: 5 photos, 3 photos_test, 2 cartoons, 2 cartoons_smoothed" in printed
    assert animegan.TERMS in printed
    assert not animegan.archive_file().exists()  # the real archive's place stays empty


def test_a_small_archive_in_the_real_ones_place_is_refused_before_extraction(cache, archive,
                                                                            tmp_path, capsys):
    real = animegan.archive_file()
    real.parent.mkdir(parents=True)
    real.write_bytes(archive.read_bytes())  # what the tests once left in a user's cache
    out = tmp_path / "set"
    assert main(["data", "fetch", "animegan", "--style", "hayao", "--out", str(out),
                 "--size", "32", "--workers", "1"]) == 2
    error = capsys.readouterr().err
    assert f"error: {real} holds {archive.stat().st_size:,} bytes: not AnimeGAN's " \
           "dataset-1, which is over 10 MB; delete it and run again" in error
    assert "--url URL_OR_FILE" in error
    assert sorted(path.name for path in real.parent.iterdir()) == ["dataset.zip"]
    assert not (out / "cartoons").exists()


def test_the_test_run_keeps_out_of_the_users_home_and_cache():
    import pwd

    home = Path(pwd.getpwuid(os.getuid()).pw_dir).resolve()
    checkout = Path(env.__file__).resolve().parent.parent
    paths = env.paths()
    assert Path.home().resolve() != home
    for folder in (paths.home, paths.data, paths.runs, paths.cache, animegan.archive_file()):
        assert not folder.resolve().is_relative_to(home), folder
        assert not folder.resolve().is_relative_to(checkout), folder


def test_command_line_unknown_style_is_one_line_and_exit_2(cache, tmp_path, capsys):
    assert main(["data", "fetch", "animegan", "--style", "ghibli", "--out",
                 str(tmp_path / "set")]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1
    assert "use one of hayao, shinkai, paprika, summerwar" in error


def test_sigterm_while_extracting_exits_143_and_a_killed_extraction_is_swept(
        cache, archive, tmp_path, monkeypatch, capsys, sigterm_in_test):
    import signal
    import subprocess
    import sys

    url = archive.as_uri()
    kept = animegan.archive_file(url)
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    killed = kept.with_name(f".dataset.{int(done.stdout)}.0123abcd.tmp")  # left by kill -9
    (killed / "train_photo").mkdir(parents=True)
    extract_member, calls = animegan._extract_member, []

    def terminated(*args):
        calls.append(1)
        if len(calls) == 5:
            os.kill(os.getpid(), signal.SIGTERM)
        extract_member(*args)

    args = ["data", "fetch", "animegan", "--style", "hayao", "--out", str(tmp_path / "set"),
            "--size", "32", "--workers", "1", "--url", url]
    with monkeypatch.context() as patch:
        patch.setattr(animegan, "_extract_member", terminated)
        assert main(args) == 143
    assert "terminated (SIGTERM)" in capsys.readouterr().err
    assert sorted(path.name for path in kept.parent.iterdir()) == ["dataset.zip"]
    assert main(args) == 0
    assert sorted(path.name for path in kept.parent.iterdir()) == ["dataset", "dataset.zip"]
