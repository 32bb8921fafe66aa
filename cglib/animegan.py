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

import hashlib
import json
import os
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

#: What is known of the real archive, to tell it from another file in its place: it holds
#: thousands of film frames and photos (1,792 frames in ``Hayao/style`` alone, as many
#: smoothed copies, four styles and the photos), which no zip under 10 MB can hold. Its
#: SHA-256 is published nowhere, so cglib cannot pin it; the manifest records the one found.
MIN_ARCHIVE_BYTES = 10 * 2**20


def archive_file(url: str = ARCHIVE_URL) -> Path:
    """Where the archive from ``url`` is kept between runs: the real one (:data:`ARCHIVE_URL`)
    at ``<cache>/animegan/dataset.zip`` (``cglib.env.paths().cache``, moved by
    ``CGLIB_CACHE_DIR``), a copy from another address at ``<cache>/animegan/from-<hash of
    the address>/dataset.zip``, so that no other file is ever taken for the real one."""
    folder = env.paths().cache / "animegan"
    if url != ARCHIVE_URL:
        folder /= f"from-{hashlib.sha256(url.encode()).hexdigest()[:12]}"
    return folder / "dataset.zip"


def source_url(source: str) -> str:
    """The address to fetch the archive from: ``source`` when it is a URL (``https://``,
    ``file://``), else the ``file://`` URL of ``source`` as a file path (a mirror's copy
    on this machine); ValueError when that file is missing."""
    if "://" in source:
        return source
    path = Path(source).expanduser()
    if not path.is_file():
        raise ValueError(f"--url {source}: {files.describe_missing(path)}; give the URL of "
                         "dataset.zip (a mirror's) or the path of a copy of it")
    return path.resolve().as_uri()


def _check_real(archive: Path) -> None:
    """ValueError when ``archive``, in the place of the real one, cannot be it
    (:data:`MIN_ARCHIVE_BYTES`), saying how to put a mirror's copy in place instead."""
    found = archive.stat().st_size
    if found < MIN_ARCHIVE_BYTES:
        raise ValueError(
            f"{archive} holds {found:,} bytes: not AnimeGAN's dataset-1, which is over "
            f"{MIN_ARCHIVE_BYTES // 2**20} MB; delete it and run again to download the real "
            "one, or give a mirror's copy with --url URL_OR_FILE (url=... in Python)")


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
    (resumable, with progress; see :func:`cglib.download.download`; a mirror's URL, or the
    path or ``file://`` URL of a copy will do: :func:`source_url`), and extracted once beside
    it (:func:`extract`). A file in the real archive's place that cannot be it (under
    :data:`MIN_ARCHIVE_BYTES`) is refused before extraction. Then
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
    url = source_url(url)
    out = files.output_folder(out, "data set folder")
    _refuse_other_style(out, style)
    archive = _download_archive(url)
    root, record = extract(archive)
    sources = _sources(root, style, archive)
    # The style is claimed before any cartoon is written, so that a run interrupted while
    # laying out is resumed, not refused as another style, the next time.
    manifest = data.read_manifest(out) | {"source": url, "style": style}
    data.write_manifest(out / "manifest.json", manifest)
    rejected = _lay_out(sources, root, archive, out, size, workers)
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


def _download_archive(url: str) -> Path:
    """The archive from ``url`` in :func:`archive_file` (downloaded unless it is there), after
    sweeping what an extraction killed earlier left beside it; a file in the real archive's
    place that cannot be it is refused (:func:`_check_real`)."""
    files.sweep_temporaries(archive_file(url).parent)  # an extraction a killed run left
    try:
        archive = download.download(url, archive_file(url), description="AnimeGAN dataset-1")
    except RuntimeError as error:  # offline: say how to use a copy from elsewhere
        raise RuntimeError(f"{error}; or give a mirror's copy: data fetch animegan --url "
                           "URL_OR_FILE") from None
    if url == ARCHIVE_URL:
        _check_real(archive)
    return archive


def _lay_out(sources: dict[str, Path], root: Path, archive: Path, out: Path, size: int,
             workers: int | None) -> dict[str, str]:
    """Fit each domain's ``sources`` folder (under the extracted ``root``) into ``out`` at
    ``size``, then smooth the cartoons' edges; returns the rejected files (path relative to
    ``root`` or ``out`` -> reason). ValueError when no image of a folder could be used."""
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
    return rejected


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
    ``..``). The temporary folder of an extraction that was killed is swept by the next
    :func:`fetch` (:func:`cglib.files.sweep_temporaries`).
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
    temporary = files.temporary_name(folder)
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
