"""The field's public training set, AnimeGAN's "dataset-1", as a cglib data set.

What it is: one zip archive (:data:`ARCHIVE_URL`) that the authors of AnimeGAN
(github.com/TachibanaYoshino/AnimeGAN, release "dataset-1") published with their code, and
that many photo-to-anime reimplementations have trained on since. It holds real photos
(landscapes, as the AnimeGAN README says) and, for four styles, frames of anime films with an
edge-smoothed copy of each: Hayao (Hayao Miyazaki), Shinkai (Makoto Shinkai), Paprika (Satoshi
Kon's film) and SummerWar (Mamoru Hosoda's Summer Wars).

Terms (:data:`TERMS`): the film frames are for research use only; the photos' licences are
those of their owners. Nothing here relicenses them; ``manifest.json`` repeats this line.

The archive's layout, as found in the scripts that read it (its root has no enclosing folder;
the scripts unzip it into ``dataset/``)::

    train_photo/                 photos for training
    val/                         photos the training loop cartoonizes after every epoch
    test/test_photo/             test photos
    test/test_photo256/, test/real/, test/HR_photo/   more test photos
    test/label_map/              label maps (not photos)
    Hayao/style/, Hayao/smooth/  cartoons, and copies smoothed by the authors' script
    Shinkai/..., Paprika/..., SummerWar/...   the same for the other styles

Sources: in TachibanaYoshino/AnimeGAN, ``AnimeGAN.py`` trains on ``dataset/train_photo``,
``dataset/<Style>/style`` and ``dataset/<Style>/smooth``, samples ``dataset/val`` after every
epoch and tests on ``dataset/test/test_photo``, and ``tools/edge_smooth.py`` writes
``<Style>/smooth`` from ``<Style>/style``; PaddleGAN's AnimeGAN tutorial
(``docs/en_US/tutorials/animegan.md``) lists the whole tree after ``unzip dataset.zip -d
data/animedataset`` (and 1,792 images in ``Hayao/style``).

What :func:`fetch` takes: ``photos/`` from ``train_photo``, ``photos_test/`` from
``test/test_photo`` (the authors' test set), ``cartoons/`` from ``<Style>/style``, each
image fitted to the data set's size with the project's rule (:func:`cglib.images.read_fitted`).
``cartoons_smoothed/`` is made from cglib's ``cartoons/`` with the paper's smoothing
(:func:`cglib.data.smooth_folder`), not taken from the archive's ``smooth/``: that script
stretched every frame to a square before smoothing, so its copies would not show the same
picture as the centre-cropped cartoons. This module sits above :mod:`cglib.data` (which
needs no network) and fetches through :mod:`cglib.download`.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import stat
import zipfile
import zlib
from pathlib import Path, PurePosixPath

from tqdm.auto import tqdm

from cglib import data, download, env, files

ARCHIVE_URL = ("https://github.com/TachibanaYoshino/AnimeGAN/releases/download/dataset-1/"
               "dataset.zip")

TERMS = ("AnimeGAN dataset-1: the film frames are for research use only; the photos' "
         "licences are those of their owners")

#: Style name (as cglib takes it) -> the archive's folder of that style.
STYLES = {"hayao": "Hayao", "shinkai": "Shinkai", "paprika": "Paprika",
          "summerwar": "SummerWar"}

#: The archive's folders of photos, relative to its root.
PHOTOS = "train_photo"
TEST_PHOTOS = "test/test_photo"

#: The file inside an extracted folder that says which archive it came from.
RECORD = ".archive.json"


def archive_file() -> Path:
    """Where the archive is kept between runs: ``<cache>/animegan/dataset.zip``
    (``cglib.env.paths().cache``, moved by ``CGLIB_CACHE_DIR``)."""
    return env.paths().cache / "animegan" / "dataset.zip"


def _style(style: str) -> str:
    name = style.lower()
    if name not in STYLES:
        raise ValueError(f"style {style!r} is not in AnimeGAN's dataset-1; use one of "
                         f"{', '.join(STYLES)}")
    return name


def fetch(style: str, out: str | os.PathLike, *, url: str = ARCHIVE_URL, size: int = 256,
          workers: int | None = None) -> dict:
    """Build the data set of ``style`` (hayao, shinkai, paprika or summerwar, any case) from
    AnimeGAN's dataset-1 at ``out``; returns its manifest (also written to
    ``out/manifest.json``).

    The archive is downloaded from ``url`` into :func:`archive_file` unless it is there
    (resumable, with progress; see :func:`cglib.download.download`; a mirror or the
    ``file://`` URL of a copy will do), and extracted once beside it (:func:`extract`). Then
    ``out`` gets ``photos/``, ``photos_test/``, ``cartoons/`` and ``cartoons_smoothed/`` (see
    the module notes), ``size`` x ``size`` PNGs, made on ``workers`` processes (None: all
    cores). Outputs that are up to date are kept, so a second run is quick; bad images are
    skipped and listed in the manifest with their reason. The manifest records the source
    URL, the archive's SHA-256 and length, the style, the size, the images per domain, the
    terms and the rejected files.

    Raises ValueError for an unknown style, for an ``out`` that holds another style's
    cartoons, and for an archive without the expected folders (naming them; nothing is
    written to ``out`` then); RuntimeError when the archive cannot be downloaded.
    """
    style = _style(style)
    out = files.output_folder(out, "data set folder")
    _refuse_other_style(out, style)
    archive = download.download(url, archive_file(), description="AnimeGAN dataset-1")
    root, record = extract(archive)
    sources = _sources(root, style, archive)
    # The style is claimed before any cartoon is written, so that a run interrupted while
    # laying out is resumed, not refused as another style, the next time.
    manifest = data.read_manifest(out) | {"source": url, "style": style}
    data.write_manifest(out / "manifest.json", manifest)
    rejected = {}
    for domain, source in sources.items():
        report = data.fit_folder(source, out / domain, size, workers,
                                 description=f"{domain} from {source.relative_to(root)}")
        rejected |= {_relative(path, root): reason for path, reason in report.rejected.items()}
        if not (report.written or report.up_to_date):
            example = next(iter(report.rejected.items()), ("", "unknown"))
            raise ValueError(f"no image of {source} could be used ({example[0]}: {example[1]}); "
                             f"the archive {archive} may be damaged: delete it and fetch again")
    smoothing = data.smooth_folder(out / "cartoons", out / "cartoons_smoothed", size, workers)
    rejected |= {_relative(path, out): reason for path, reason in smoothing.rejected.items()}
    manifest.update({
        "archive": {"sha256": record["sha256"], "bytes": record["bytes"]},
        "folders": {domain: source.relative_to(root).as_posix()
                    for domain, source in sources.items()},
        "size": size,
        "counts": data.check_dataset(out),
        "terms": TERMS,
        "rejected": rejected,
    })
    data.write_manifest(out / "manifest.json", manifest)
    return manifest


def fetched() -> list[Path]:
    """The data sets fetched from dataset-1 under the data folder (``animegan-<style>``
    folders whose manifest lists their counts: complete ones), sorted by name."""
    found = []
    for folder in sorted(env.paths().data.glob("animegan-*")):
        manifest = data.read_manifest(folder)
        if manifest.get("source") and manifest.get("counts"):
            found.append(folder)
    return found


def _relative(path: str, root: Path) -> str:
    return Path(path).relative_to(root).as_posix()


def _refuse_other_style(out: Path, style: str) -> None:
    """Raise ValueError when ``out/cartoons`` holds cartoons of another style than ``style``
    (by ``out/manifest.json``; cartoons it says nothing about count as another style)."""
    if not data.count_images(out / "cartoons"):
        return
    held = data.read_manifest(out).get("style")
    if held == style:
        return
    what = f"{held} cartoons" if held else "cartoons that were not fetched from dataset-1"
    raise ValueError(f"{out} holds {what}; fetching {style} there would mix two styles in one "
                     f"data set: choose another output folder (--out), e.g. "
                     f"{out.parent / f'animegan-{style}'}")


def _sources(root: Path, style: str, archive: Path) -> dict[str, Path]:
    """The archive's folders that fill ``photos``, ``photos_test`` and ``cartoons``; raises
    ValueError naming those that are missing or hold no images."""
    sources = {"photos": root / PHOTOS, "photos_test": root / TEST_PHOTOS,
               "cartoons": root / STYLES[style] / "style"}
    missing = [f"{path.relative_to(root).as_posix()}/" for path in sources.values()
               if not data.count_images(path)]
    if missing:
        found = sorted(f"{path.name}/" for path in root.iterdir() if path.is_dir())
        raise ValueError(
            f"{archive} does not have the layout of AnimeGAN's dataset-1: missing or without "
            f"images: {', '.join(missing)} (its top level holds "
            f"{', '.join(found) or 'no folders'}). Delete it to download it again, or give "
            "the URL of an archive with that layout")
    return sources


# -- extracting the archive -------------------------------------------------------------------

def extract(archive: str | os.PathLike) -> tuple[Path, dict]:
    """Extract the zip ``archive`` once into the folder beside it named after it
    (``dataset.zip`` -> ``dataset/``). Returns that folder and its record: the archive's
    ``sha256`` (hexadecimal), ``bytes`` and ``modified_ns`` (modification time, ns).

    A folder extracted from this very file (same length and modification time, kept in its
    ``.archive.json``) is reused as it is. Otherwise the archive is extracted into a hidden
    temporary folder beside it, renamed into place only once complete: an interrupted
    extraction (Ctrl-C, a full disk) leaves nothing under the final name. Raises ValueError for
    a damaged archive and for entries that would land outside the folder (absolute paths,
    ``..``).
    """
    archive = Path(archive)
    folder = archive.with_suffix("")
    status = archive.stat()
    stamp = {"bytes": status.st_size, "modified_ns": status.st_mtime_ns}
    try:
        record = json.loads((folder / RECORD).read_text())
        if {key: record.get(key) for key in stamp} == stamp:
            return folder, record
    except (OSError, ValueError):  # never extracted, or the record is damaged: extract again
        pass
    temporary = folder.with_name(f".{folder.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    try:
        _extract_into(archive, temporary)
        record = {**stamp, "sha256": download.sha256_of(archive)}
        files.write_json(temporary / RECORD, record)
        if folder.exists():
            shutil.rmtree(folder)
        os.replace(temporary, folder)
    except BaseException:
        shutil.rmtree(temporary, ignore_errors=True)
        raise
    return folder, record


def _extract_into(archive: Path, folder: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as bundle:
            for member in tqdm(bundle.infolist(), desc=f"extracting {archive.name}",
                               unit="file"):
                _extract_member(bundle, member, folder, archive)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise ValueError(f"{archive} is damaged or not a zip archive ({error}); delete it "
                         "and run again to download it anew") from None


def _extract_member(bundle: zipfile.ZipFile, member: zipfile.ZipInfo, folder: Path,
                    archive: Path) -> None:
    """Write one entry of the archive under ``folder``; backslashes count as separators, as
    in archives made on Windows."""
    parts = PurePosixPath(member.filename.replace("\\", "/")).parts
    if not parts or parts[0] == "/" or ".." in parts or ":" in parts[0]:
        raise ValueError(f"{archive} holds the entry {member.filename!r}, which would be "
                         "written outside the folder it is extracted to; such an archive is "
                         "refused: delete it and download it from a source you trust")
    if stat.S_ISLNK(member.external_attr >> 16):  # zipfile would write it as a plain file
        raise ValueError(f"{archive} holds the entry {member.filename!r}, a symbolic link; an "
                         "archive of images holds none, so it is refused: delete it and "
                         "download it from a source you trust")
    target = folder.joinpath(*parts)
    if member.is_dir():
        target.mkdir(parents=True, exist_ok=True)
        return
    target.parent.mkdir(parents=True, exist_ok=True)  # the whole folder is renamed at the end
    with bundle.open(member) as source, open(target, "wb") as sink:
        shutil.copyfileobj(source, sink, download.CHUNK)
