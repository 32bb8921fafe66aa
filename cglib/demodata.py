"""The project's own demo data set, built offline and deterministically from sample photos.

No download: the photographs come from files that installed packages ship (scikit-image's
``skimage/data`` and matplotlib's ``mpl-data/sample_data``), read as files. They are split by
source photograph, so that no crop of a test photo or of a cartoon's source is ever a
training photo, and the held-out photos come from as many distinct photographs as the
packages offer (four; two of them gray, read as RGB):

- ``photos/``: astronaut, the stereo pair motorcycle_left / motorcycle_right (two views of
  one scene: they stay in one split), moon and brick;
- ``photos_test/``: chelsea (a cat), coffee, camera (a cameraman) and coins: subjects the
  training photos do not have;
- ``cartoons/``: grace_hopper and rocket, cartoonized. Other photographs than the training
  ones keep the two domains unpaired, as the paper's data are.

Each source is downscaled once (short side 1.6 x the crop size, or its own if smaller); the
cartoon sources are cartoonized whole at that size, by a classical filter or by an official
generator (cheap on a CPU that way); then random square crops, of a random side between the
crop size and the short side, resized to the crop size and flipped at random, make the
images, the sources taken in turn. ``cartoons_smoothed/`` is built from the cartoons by
:func:`cglib.data.smooth_folder`. ``manifest.json`` records the source of every image
(:func:`composition` sums it up).
"""

from __future__ import annotations

import importlib
import os
import shutil
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

from cglib import animegan, env, pretrained
from cglib.data import check_dataset, read_manifest, smooth_folder, write_manifest
from cglib.files import sweep_temporaries, temporary_name
from cglib.images import read_image, write_image

#: Source photographs per split: (package, path inside the installed package).
SOURCES = {
    "photos": [("skimage", "data/astronaut.png"), ("skimage", "data/motorcycle_left.png"),
               ("skimage", "data/motorcycle_right.png"), ("skimage", "data/moon.png"),
               ("skimage", "data/brick.png")],
    "photos_test": [("skimage", "data/chelsea.png"), ("skimage", "data/coffee.png"),
                    ("skimage", "data/camera.png"), ("skimage", "data/coins.png")],
    "cartoons": [("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
                 ("skimage", "data/rocket.jpg")],
}

#: Per profile: the folder under ``cglib.env.paths().data``, the crop size and the number of
#: images per domain. ``demo`` and ``paper`` share one set; ``smoke`` builds in a second.
RECIPES = {
    "smoke": {"folder": "demo-smoke", "image_size": 64,
              "counts": {"photos": 8, "photos_test": 4, "cartoons": 8}},
    "demo": {"folder": "demo", "image_size": 256,
             "counts": {"photos": 192, "photos_test": 32, "cartoons": 192}},
}
RECIPES["paper"] = RECIPES["demo"]

#: How much larger than the crop size the sources are worked at (crops span 1x to 1.6x).
WORKING_SCALE = 1.6

MANIFEST_KIND = "cglib demo data set"


def source_path(package: str, name: str) -> Path:
    """The file ``name`` inside the installed ``package`` (``"skimage"`` or ``"matplotlib"``):
    sample photographs are read as plain files, so nothing is ever downloaded."""
    if package not in ("skimage", "matplotlib"):
        raise ValueError(f"unknown source package {package!r}; use 'skimage' or 'matplotlib'")
    return Path(importlib.import_module(package).__file__).parent / name


def cartoon_filter(image: np.ndarray, colours: int = 10, passes: int = 5,
                   seed: int = 0) -> np.ndarray:
    """A classical cartoon look for an H x W x 3 uint8 RGB photo (same shape and dtype out).

    Flat colour regions: ``passes`` rounds of edge-preserving bilateral filtering, then
    k-means colour quantization to ``colours`` colours (k-means++ seeded with ``seed``, so the
    result repeats). Dark edge lines: an adaptive threshold of the median-blurred gray image
    marks pixels darker than their neighbourhood, which are darkened to a fifth.
    """
    smooth = image
    for _ in range(passes):
        smooth = cv2.bilateralFilter(smooth, 9, 30, 5)
    pixels = smooth.reshape(-1, 3).astype(np.float32)
    cv2.setRNGSeed(seed)
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 20, 0.5)
    _, labels, centres = cv2.kmeans(pixels, colours, None, criteria, 1, cv2.KMEANS_PP_CENTERS)
    flat = np.rint(centres).astype(np.uint8)[labels.ravel()].reshape(image.shape)
    gray = cv2.medianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), 7)
    lines = cv2.adaptiveThreshold(gray, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY,
                                  9, 3) == 0
    flat[lines] = flat[lines] // 5
    return flat


def resolve_source(source: str = "auto") -> tuple[str, str]:
    """The cartoon source to use and why: ``"filter"``, ``"official:<style>"``, or ``"auto"``
    (``official:hayao`` when its weights are present, else ``filter``)."""
    if source == "filter":
        return "filter", "asked for"
    if source != "auto" and not source.startswith("official:"):
        raise ValueError(f"source={source!r}: use 'auto', 'filter' or 'official:<style>' "
                         "(for example 'official:hayao')")
    style = "hayao" if source == "auto" else source.split(":", 1)[1]
    if pretrained.weights_available(style):
        return f"official:{style}", f"the official {style} weights are in {env.paths().weights}"
    if source == "auto":
        return "filter", (f"no official hayao weights in {env.paths().weights} (set "
                          "CGLIB_WEIGHTS_DIR, or run cglib.pretrained.download_official('hayao'))")
    raise FileNotFoundError(
        f"source={source!r}, but the official {style} weights are not in "
        f"{env.paths().weights}; get them with cglib.pretrained.download_official({style!r}) "
        "(or set CGLIB_WEIGHTS_DIR to a folder holding them), or use source='filter'"
    )


def demo_recipe(profile: str = "demo", source: str = "filter", seed: int = 0) -> dict:
    """Everything the bytes of the demo set depend on; a built set is reused only when its
    manifest holds the same recipe. ``source`` is already resolved (no ``"auto"``)."""
    if profile not in RECIPES:
        raise ValueError(f"profile={profile!r}: use one of {', '.join(RECIPES)}")
    recipe = RECIPES[profile]
    return {
        "version": 2, "folder": recipe["folder"], "image_size": recipe["image_size"],
        "counts": recipe["counts"], "working_scale": WORKING_SCALE, "seed": seed,
        "cartoon_source": source, "opencv": cv2.__version__,
        "sources": {split: [f"{package}/{name}" for package, name in files]
                    for split, files in SOURCES.items()},
    }


def _working_copy(image: np.ndarray, image_size: int) -> np.ndarray:
    """``image`` downscaled so that its short side is ``WORKING_SCALE`` x ``image_size``
    (unchanged when smaller already)."""
    height, width = image.shape[:2]
    scale = min(1.0, WORKING_SCALE * image_size / min(height, width))
    if scale == 1.0:
        return image
    size = (round(width * scale), round(height * scale))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def _render(images: list[np.ndarray], source: str, seed: int) -> list[np.ndarray]:
    """Cartoonize whole working copies with the resolved ``source``."""
    if source == "filter":
        return [cartoon_filter(image, seed=seed) for image in images]
    return pretrained.render_cartoons(images, source.split(":", 1)[1])


def _crops(images: list[np.ndarray], count: int, image_size: int,
           rng: np.random.Generator) -> list[tuple[int, np.ndarray]]:
    """``count`` random square crops, the sources taken in turn (so every one is in the first
    few): a side between ``image_size`` and the source's short side, a random place, resized
    to ``image_size`` and flipped with probability 1/2. Each with the index of its source."""
    crops = []
    for number in range(count):
        source = number % len(images)
        image = images[source]
        height, width = image.shape[:2]
        side = int(rng.integers(image_size, min(height, width) + 1))
        top = int(rng.integers(height - side + 1))
        left = int(rng.integers(width - side + 1))
        crop = cv2.resize(image[top:top + side, left:left + side], (image_size, image_size),
                          interpolation=cv2.INTER_AREA)
        crops.append((source, crop[:, ::-1] if rng.random() < 0.5 else crop))
    return crops


def build_demo_dataset(root: str | os.PathLike, recipe: dict) -> dict[str, int]:
    """Write the demo set of ``recipe`` (see :func:`demo_recipe`) into the new folder ``root``
    and its ``manifest.json`` (with the source of every image); returns the counts."""
    root = Path(root)
    size, seed = recipe["image_size"], recipe["seed"]
    sources: dict[str, str] = {}
    for index, (split, files) in enumerate(SOURCES.items()):
        originals = [_working_copy(read_image(source_path(*file)), size) for file in files]
        if split == "cartoons":
            originals = _render(originals, recipe["cartoon_source"], seed)
        rng = np.random.default_rng([seed, index])
        for number, (source, crop) in enumerate(_crops(originals, recipe["counts"][split],
                                                       size, rng)):
            name = f"{split}/{number:04d}.png"
            write_image(root / name, np.ascontiguousarray(crop))
            sources[name] = "/".join(files[source])
    report = smooth_folder(root / "cartoons", root / "cartoons_smoothed", size)
    if report.rejected:
        raise RuntimeError(f"smoothing the demo cartoons failed:\n{report.summary()}")
    counts = check_dataset(root)
    write_manifest(root / "manifest.json", {"kind": MANIFEST_KIND, "recipe": recipe,
                                            "counts": counts, "sources": sources})
    return counts


def composition(root: str | os.PathLike, domain: str = "photos_test",
                first: int | None = None) -> dict[str, int]:
    """How many images of ``domain`` (of its ``first`` images, in sorted order) come from each
    source photograph, as the demo set's manifest records it; empty for other data sets."""
    sources = read_manifest(root).get("sources", {})
    names = sorted(name for name in sources if name.startswith(f"{domain}/"))[:first]
    return dict(Counter(sources[name].rsplit("/", 1)[-1] for name in names))


def ensure_demo_dataset(profile: str = "demo", source: str = "auto", seed: int = 0) -> Path:
    """The demo data set for ``profile``, built if needed; returns its root.

    ``demo`` and ``paper``: ``<data>/demo`` (256x256; 192 photos, 32 test photos, 192
    cartoons and their smoothed copies; seconds with the filter source). ``smoke``:
    ``<data>/demo-smoke`` (64x64, a handful per domain). ``source``: where the cartoons come
    from (:func:`resolve_source`); the choice is printed and recorded in ``manifest.json``.
    A set whose manifest holds the same recipe is reused; otherwise it is built in a
    temporary folder beside it and renamed into place, so an interrupted build leaves nothing
    half-made. The same recipe and seed give the same bytes.
    """
    chosen, reason = resolve_source(source)
    recipe = demo_recipe(profile, chosen, seed)
    root = env.paths().data / recipe["folder"]
    print(f"demo data set {root}: cartoons from {chosen} ({reason})")
    manifest = read_manifest(root)
    if manifest.get("recipe") == recipe:
        try:
            if check_dataset(root) == manifest["counts"]:
                print("reusing it: it was built with the same recipe")
                return root
        except FileNotFoundError:
            pass  # damaged: rebuilt below
    if root.exists() and manifest.get("kind") != MANIFEST_KIND:
        raise RuntimeError(
            f"{root} exists but is not a demo data set built by cglib (no manifest.json of "
            "one); move it away or set CGLIB_DATA_DIR to another folder"
        )
    sweep_temporaries(root.parent)  # a build that was killed
    building = temporary_name(root)
    try:
        counts = build_demo_dataset(building, recipe)
        shutil.rmtree(root, ignore_errors=True)
        try:
            os.replace(building, root)
        except OSError:  # another process renamed its build into place meanwhile
            if read_manifest(root).get("recipe") != recipe:
                raise
    finally:
        shutil.rmtree(building, ignore_errors=True)
    print("built: " + ", ".join(f"{count} {domain}" for domain, count in counts.items()))
    return root


def cartoon_source(root: str | os.PathLike) -> str:
    """Where the cartoons of the data set at ``root`` came from, as its manifest records it
    (``"filter"``, ``"official:hayao"``, ...); ``""`` for a data set not built by cglib."""
    return read_manifest(root).get("recipe", {}).get("cartoon_source", "")


def choose_data(profile: str, given: str | os.PathLike = "") -> Path:
    """The data set a notebook trains on, said in one line: ``given`` when set (a notebook's
    ``DATA_DIR``); under the ``paper`` profile, a set fetched from AnimeGAN's dataset-1 when
    there is one (:func:`cglib.animegan.fetched`); else the demo set of ``profile``, built if
    needed."""
    if given:
        root = Path(given).expanduser().resolve()
        print(f"data set {root} (given)")
        return root
    fetched = animegan.fetched() if profile == "paper" else []
    if fetched:
        print(f"data set {fetched[0]} (AnimeGAN dataset-1, the public training set)")
        return fetched[0]
    return ensure_demo_dataset(profile)


#: The motions of :func:`clip_frames`: the three clips flicker is measured on.
MOTIONS = ("pan", "zoom", "square")


def clip_frames(photo: np.ndarray, motion: str, frames: int = 24, width: int = 256,
                height: int = 192) -> list[np.ndarray]:
    """``frames`` frames of ``width`` x ``height`` (H x W x 3 uint8 RGB) made from ``photo``
    (H x W x 3 uint8 RGB) moving as a camera or a scene does: ``"pan"``, a slow pan from its
    left edge to its right (the photo scaled to the frame's height); ``"zoom"``, a zoom into
    its centre to 1.25 x; ``"square"``, the photo still, a gray square (a quarter of the
    height) crossing it. Deterministic."""
    if motion not in MOTIONS:
        raise ValueError(f"motion={motion!r}: use one of {', '.join(MOTIONS)}")
    last = max(1, frames - 1)
    if motion == "pan":
        scale = height / photo.shape[0]
        photo = cv2.resize(photo, (max(width + frames, round(photo.shape[1] * scale)), height),
                           interpolation=cv2.INTER_AREA)
        travel = photo.shape[1] - width
        return [np.ascontiguousarray(photo[:, round(i * travel / last):][:, :width])
                for i in range(frames)]
    still = _cover(photo, width, height)
    if motion == "zoom":
        center = np.array([[1, 0, -width / 2], [0, 1, -height / 2], [0, 0, 1]])
        return [cv2.warpAffine(still, (np.linalg.inv(center) @ np.diag([z, z, 1]) @ center)[:2],
                               (width, height), flags=cv2.INTER_LINEAR)
                for z in 1 + 0.25 * np.arange(frames) / last]
    side = height // 4
    pictures = []
    for index in range(frames):
        picture = still.copy()
        left = round(index * (width - side) / last)
        picture[height // 2 - side // 2:][:side, left:left + side] = 128
        pictures.append(picture)
    return pictures


def _cover(photo: np.ndarray, width: int, height: int) -> np.ndarray:
    """``photo`` scaled to cover ``width`` x ``height`` and cropped about its centre."""
    scale = max(width / photo.shape[1], height / photo.shape[0])
    size = (max(width, round(photo.shape[1] * scale)), max(height, round(photo.shape[0] * scale)))
    scaled = cv2.resize(photo, size, interpolation=cv2.INTER_AREA)
    top, left = (size[1] - height) // 2, (size[0] - width) // 2
    return np.ascontiguousarray(scaled[top:top + height, left:left + width])


def pan_clip(path: str | os.PathLike, width: int = 256, height: int = 192, frames: int = 24,
             fps: int = 12) -> Path:
    """A short demo video, made offline: a slow pan across the chelsea test photo
    (:func:`clip_frames`), ``frames`` frames of ``width`` x ``height`` at ``fps`` (H.264 in
    MP4), with a sound track (a 440 Hz tone, AAC) so that keeping the sound can be seen.
    Written atomically; returns ``path``."""
    photo = read_image(source_path("skimage", "data/chelsea.png"))
    return write_video(path, clip_frames(photo, "pan", frames, width, height), fps, tone=True)


def _tone(container: object, stream: object, seconds: float) -> None:
    """``seconds`` of a 440 Hz tone (mono, float planar) encoded into ``stream``."""
    import av

    rate, size = 44100, 1024
    samples = np.sin(2 * np.pi * 440 * np.arange(int(rate * seconds)) / rate) * 0.2
    for start in range(0, len(samples), size):
        chunk = samples[start:start + size].astype(np.float32)[None]
        frame = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
        frame.sample_rate, frame.pts = rate, start
        container.mux(stream.encode(frame))
    container.mux(stream.encode())


def film_clip(path: str | os.PathLike, source: str = "official:hayao", shots: int = 48,
              width: int = 256, height: int = 192, fps: int = 12, seed: int = 0) -> Path:
    """A stand-in for a film, made offline: the cartoon source photographs (the demo set's,
    never a photo the demo trains or tests on), each drawn whole by ``source`` (resolved, as
    :func:`resolve_source` returns it: a released style, ``"official:<style>"``, or
    ``"filter"``), then ``shots`` half-second shots, each a short pan across a window of
    random place and size (a cut between shots), ``width`` x ``height`` at ``fps`` (H.264 in
    MP4). Its key frames (:func:`cglib.data.key_frames`, every half second) are what a
    fine-tuning run learns the style from (notebook 08). Written atomically; returns
    ``path``."""
    sources = [_working_copy(read_image(source_path(*file)), height)
               for file in SOURCES["cartoons"]]
    cartoons = _render(sources, source, seed)
    rng = np.random.default_rng(seed)
    frames = []
    for shot in range(shots):
        cartoon = cartoons[shot % len(cartoons)]
        frames += _shot(cartoon, width, height, fps // 2, rng)
    return write_video(path, frames, fps)


def _shot(image: np.ndarray, width: int, height: int, count: int,
          rng: np.random.Generator) -> list[np.ndarray]:
    """``count`` frames (``height`` x ``width`` x 3) of a pan across a random window of
    ``image`` whose size is between 1x and 1.6x the frame's (as far as ``image`` allows)."""
    limit = min(image.shape[0] / height, image.shape[1] / width)
    scale = rng.uniform(1.0, min(WORKING_SCALE, limit))
    window_w, window_h = round(width * scale), round(height * scale)
    top = int(rng.integers(image.shape[0] - window_h + 1))
    left, right = (int(x) for x in rng.integers(image.shape[1] - window_w + 1, size=2))
    return [cv2.resize(image[top:top + window_h, x:x + window_w], (width, height),
                       interpolation=cv2.INTER_AREA)
            for x in np.linspace(left, left + (right - left) // 8, count).round().astype(int)]


def write_video(path: str | os.PathLike, frames: list[np.ndarray], fps: int,
                 tone: bool = False) -> Path:
    """``frames`` (H x W x 3 uint8 RGB, one size) as H.264 in MP4 at ``fps``, with a sound
    track of a 440 Hz tone (AAC) when ``tone``; atomically. Returns ``path``."""
    import av

    from cglib import files

    path = Path(path)
    height, width = frames[0].shape[:2]
    with files.atomic_path(path) as temporary:
        with av.open(str(temporary), "w", format="mp4") as container:
            video = container.add_stream("libx264", rate=fps)
            video.width, video.height, video.pix_fmt = width, height, "yuv420p"
            audio = container.add_stream("aac", rate=44100) if tone else None
            for frame in frames:
                container.mux(video.encode(av.VideoFrame.from_ndarray(
                    np.ascontiguousarray(frame), format="rgb24")))
            container.mux(video.encode())
            if audio is not None:
                _tone(container, audio, len(frames) / fps)
    return path
