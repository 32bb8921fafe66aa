"""The authors' released generators, and cartoonizing images of any size with a generator.

:func:`load_official` turns an official weight file (four styles: Hayao, Hosoda, Paprika,
Shinkai) into a :class:`cglib.models.Generator` holding exactly the released tensors. The
official model works in BGR; the channel swap is folded into its first and last convolutions
here, so the result takes and returns RGB like every cglib generator. Files are looked for in
``cglib.env.paths().weights`` (``CGLIB_WEIGHTS_DIR``, else a per-user cache folder) and
downloaded there from a public mirror when missing, with their SHA-256 checked.

:func:`cartoonize` runs any generator on H x W x 3 uint8 RGB images of any size: it pads to a
multiple of 4 and crops back, and cuts large images into overlapping tiles blended without
seams, so a 4000x3000 photo runs in bounded memory.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from urllib.request import urlopen

import numpy as np
import torch
from torch import nn

from cglib import env
from cglib.models import Generator

STYLES = ("hayao", "hosoda", "paprika", "shinkai")

#: The public mirror of the PyTorch conversion of the authors' weights.
MIRROR_URL = ("https://github.com/clibdev/CartoonGAN-Test-Pytorch-Torch/releases/latest/download/"
              "cartoongan-{style}.pth")

#: SHA-256 of the mirror's files, checked on every download.
SHA256 = {
    "hayao": "8ab0e492efb3b705487db38679e363dc8b1f016692913bbe100587d695a9e2b5",
    "hosoda": "c666eea7700864d5972765cc43e926d900174648297bfef494006dc230fd1bf0",
    "paprika": "0629352a54838e56a2ad7fca3e6e51e6889d4338c37469f9ddb43e5929ef9475",
    "shinkai": "c3547f611e780e79aebde7f7bc2b6c278555d701620f125583d666351044c486",
}

#: The ``format`` field of generator files written by :func:`save_generator`.
CGLIB_FORMAT = "cglib-generator"

#: Default tile side and overlap of :func:`cartoonize`, in pixels (its docstring says how they
#: were chosen): images up to 2048 on each side, 1080p frames included, run in one piece.
TILE = 2048
OVERLAP = 256

PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

_BGR = [2, 1, 0]


# -- the official file format --------------------------------------------------------------------

def official_names() -> dict[str, str]:
    """Official layer name -> cglib module name, in the generator's order.

    ``conv01_1`` -> ``flat.conv``, ``in01_1`` -> ``flat.norm``, ``conv04_1`` ->
    ``residual_blocks.0.body.conv1``, ``deconv01_1`` -> ``up1.conv_stride_half``,
    ``deconv03_1`` (the last 7x7 convolution) -> ``output.conv``, ...
    """
    names = {"conv01_1": "flat.conv", "in01_1": "flat.norm"}
    for number, block in ((2, "down1"), (3, "down2")):
        names[f"conv{number:02d}_1"] = f"{block}.conv_stride2"
        names[f"conv{number:02d}_2"] = f"{block}.conv"
        names[f"in{number:02d}_1"] = f"{block}.norm"
    for index in range(8):
        number, block = index + 4, f"residual_blocks.{index}.body"
        for half in (1, 2):
            names[f"conv{number:02d}_{half}"] = f"{block}.conv{half}"
            names[f"in{number:02d}_{half}"] = f"{block}.norm{half}"
    for number, norm_number, block in ((1, 12, "up1"), (2, 13, "up2")):
        names[f"deconv{number:02d}_1"] = f"{block}.conv_stride_half"
        names[f"deconv{number:02d}_2"] = f"{block}.conv"
        names[f"in{norm_number}_1"] = f"{block}.norm"
    names["deconv03_1"] = "output.conv"
    return names


def _official_keys() -> dict[str, str]:
    """Official tensor key -> cglib state-dict key, for all 94 tensors."""
    keys = {}
    for official, ours in official_names().items():
        pairs = (("scale", "weight"), ("shift", "bias")) if official.startswith("in") else (
            ("weight", "weight"), ("bias", "bias"))
        for official_suffix, our_suffix in pairs:
            keys[f"{official}.{official_suffix}"] = f"{ours}.{our_suffix}"
    return keys


@functools.cache
def official_shapes() -> dict[str, tuple[int, ...]]:
    """The 94 tensors of an official file: key -> shape (``conv01_1.weight``: (64, 3, 7, 7))."""
    with torch.device("meta"):
        shapes = {key: tuple(tensor.shape) for key, tensor in Generator().state_dict().items()}
    return {official: shapes[ours] for official, ours in _official_keys().items()}


def check_official(state: dict, path: str | os.PathLike) -> None:
    """Raise ValueError naming ``path`` unless ``state`` holds exactly the official 94 float
    tensors with the official shapes."""
    fix = ("download it again (delete the file and call load_official with its style) or use "
           "an untouched copy")
    expected = official_shapes()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    problems = []
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        problems.append(f"missing key {missing[0]}{more}")
    if unexpected:
        more = f" (and {len(unexpected) - 1} more)" if len(unexpected) > 1 else ""
        problems.append(f"unexpected key {unexpected[0]}{more}")
    for key, shape in expected.items():
        tensor = state.get(key)
        if tensor is None:
            continue
        if not isinstance(tensor, torch.Tensor) or not tensor.is_floating_point():
            problems.append(f"{key} is not a float tensor")
        elif tuple(tensor.shape) != shape:
            problems.append(f"{key} has shape {tuple(tensor.shape)}, expected {shape}")
        elif not torch.isfinite(tensor).all():
            problems.append(f"{key} holds NaN or infinite values")
    if problems:
        raise ValueError(f"{path} is not an official CartoonGAN generator file: "
                         f"{'; '.join(problems[:3])}. Fix: {fix}")


def from_official(state: dict[str, torch.Tensor], epsilon: float = 1e-9) -> Generator:
    """A :class:`Generator` (RGB in, RGB out) from an official BGR state dict, on the CPU.

    The official network reads BGR and writes BGR: permuting the input channels of the first
    convolution's weight and the output channels (weight and bias) of the last one makes the
    same function of RGB images, with no arithmetic changed. ``epsilon``: the instance norm's,
    1e-9 as in the PyTorch conversion (the Torch original used 1e-5).
    """
    ours = {key: state[official] for official, key in _official_keys().items()}
    ours["flat.conv.weight"] = ours["flat.conv.weight"][:, _BGR]
    ours["output.conv.weight"] = ours["output.conv.weight"][_BGR]
    ours["output.conv.bias"] = ours["output.conv.bias"][_BGR]
    generator = Generator(epsilon=epsilon)
    generator.load_state_dict({key: tensor.contiguous() for key, tensor in ours.items()})
    return generator


# -- finding, downloading and loading weight files -----------------------------------------------

def weights_file(style: str) -> Path:
    """Where the official ``style`` weights are looked for: ``<weights>/cartoongan-<style>.pth``."""
    return env.paths().weights / f"cartoongan-{_style(style)}.pth"


def weights_available(style: str) -> bool:
    """True if the official ``style`` weights are present locally (never downloads)."""
    return weights_file(style).is_file()


def _style(style: str) -> str:
    name = style.lower()
    if name not in STYLES:
        raise ValueError(f"{style!r} is not a released style; use one of {', '.join(STYLES)}")
    return name


def download_official(style: str) -> Path:
    """Download the official ``style`` weights into the weights folder, unless present there.

    The bytes go to a temporary file in that folder, with a progress bar, and are renamed into
    place only when their SHA-256 matches :data:`SHA256`; a mismatch deletes the download and
    raises ValueError. Without a network, raises RuntimeError naming the URL and the folder.
    """
    style = _style(style)
    path = weights_file(style)
    if path.is_file():
        return path
    from tqdm.auto import tqdm

    url = MIRROR_URL.format(style=style)
    by_hand = (f"download it by hand and put it in {path.parent} (or set the environment "
               f"variable CGLIB_WEIGHTS_DIR to a folder holding {path.name})")
    try:
        response = urlopen(url, timeout=60)
    except OSError as error:
        raise RuntimeError(f"could not download the {style} weights from {url} ({error}): "
                           f"{by_hand}") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part",
                                             dir=path.parent)
    digest = hashlib.sha256()
    try:
        size = int(response.headers.get("Content-Length") or 0) or None
        with os.fdopen(descriptor, "wb") as file, response, tqdm(
                total=size, unit="B", unit_scale=True, desc=path.name) as progress:
            try:
                while chunk := response.read(1 << 20):
                    file.write(chunk)
                    digest.update(chunk)
                    progress.update(len(chunk))
            except OSError as error:
                raise RuntimeError(f"the download from {url} broke off ({error}); try again, "
                                   f"or {by_hand}") from None
        if digest.hexdigest() != SHA256[style]:
            raise ValueError(f"the file downloaded from {url} has SHA-256 {digest.hexdigest()}, "
                             f"expected {SHA256[style]}; it was deleted. Try again, or "
                             f"{by_hand}")
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return path


def load_official(style_or_path: str | os.PathLike, device: str | torch.device = "cpu",
                  epsilon: float = 1e-9) -> Generator:
    """A :class:`Generator` holding released weights, in eval mode on ``device``.

    ``style_or_path``: ``"hayao"``, ``"hosoda"``, ``"paprika"`` or ``"shinkai"`` (the file is
    found in the weights folder or downloaded, see :func:`download_official`), or the path of
    a file in the official format (checked by :func:`check_official`; ``epsilon`` is its
    instance norm's) or written by :func:`save_generator` (its own settings are used). The
    result takes and returns RGB (N, 3, H, W) in [-1, 1]. A file that is not a torch file, or
    has missing keys or wrong shapes, raises ValueError naming it and the fix.
    """
    if str(style_or_path).lower() in STYLES:
        path = download_official(str(style_or_path))
    else:
        path = Path(style_or_path)
        if not path.is_file():
            raise FileNotFoundError(f"{path} does not exist; give a style ({', '.join(STYLES)}) "
                                    "or the path of a generator weight file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and torch errors alike mean an unusable file
        raise ValueError(f"{path} is not a torch file that loads safely ({error}); it may be "
                         "truncated or corrupt: delete it and download or save it again") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a generator state dict; "
                         "give an official CartoonGAN file or one written by save_generator")
    if state.get("format") == CGLIB_FORMAT:
        generator = _from_cglib_file(state, path)
    else:
        check_official(state, path)
        generator = from_official(state, epsilon)
    return generator.to(device).eval()


def _from_cglib_file(state: dict, path: Path) -> Generator:
    try:
        generator = Generator(**state["config"])
        generator.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError) as error:
        raise ValueError(f"{path} is a damaged {CGLIB_FORMAT} file ({error}); save the "
                         "generator again with cglib.pretrained.save_generator") from None
    return generator


def save_generator(generator: Generator, path: str | os.PathLike) -> Path:
    """Write ``generator`` as ``{"format": "cglib-generator", "config": ..., "state_dict": ...}``
    (CPU tensors; loads with ``torch.load(path, weights_only=True)`` and with
    :func:`load_official`). Written to a temporary file beside ``path`` then renamed, so a
    reader never sees half a file. Returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": CGLIB_FORMAT,
        "config": dict(generator.config),
        "state_dict": {key: tensor.detach().cpu().contiguous()
                       for key, tensor in generator.state_dict().items()},
    }
    descriptor, temporary = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp",
                                             dir=path.parent)
    try:
        with os.fdopen(descriptor, "wb") as file:
            torch.save(state, file)
        os.replace(temporary, path)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return path


@functools.lru_cache(maxsize=2)
def _cached_official(path: Path, modified: float, device: str) -> Generator:
    return load_official(path, device)


def render_cartoons(images: list[np.ndarray], style: str,
                    device: str | torch.device | None = None) -> list[np.ndarray]:
    """The official ``style`` generator's cartoons of H x W x 3 uint8 RGB ``images`` (same
    shapes out). ``device``: ``None`` picks the best present (:func:`cglib.env.pick_device`).
    The loaded generator is kept for the next call."""
    device = env.pick_device() if device is None else torch.device(device)
    path = download_official(style)
    generator = _cached_official(path, path.stat().st_mtime, str(device))
    return cartoonize(generator, list(images))


# -- cartoonizing images of any size -------------------------------------------------------------

def _tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts (multiples of 4) of the fewest tiles of side ``tile`` that cover [0, length) with
    neighbours overlapping by at least ``overlap``, spread evenly; all lengths multiples of 4.

    Starting on multiples of 4 keeps each tile's stride-2 sampling grid on the whole image's.
    """
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    units = (length - tile) // 4
    return [round(index * units / (count - 1)) * 4 for index in range(count)]


def _ramp(length: int, start: int, size: int, overlap: int) -> np.ndarray:
    """Blend weights along one axis for a tile [start, start + size): a raised-cosine ramp from
    near 0 to 1 over ``overlap`` pixels on each side that has a neighbour, 1 elsewhere.
    Overlapping ramps of two neighbours sum to 1."""
    weights = np.ones(size, np.float32)
    ramp = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap) + 0.5) / overlap)
    if start > 0:
        weights[:overlap] = ramp
    if start + size < length:
        weights[size - overlap:] = ramp[::-1]
    return weights


def _autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    if precision not in PRECISIONS:
        raise ValueError(f"precision={precision!r} is not one of {', '.join(PRECISIONS)}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@contextlib.contextmanager
def _evaluating(module: nn.Module) -> Iterator[None]:
    """Eval mode (batch norm uses its running statistics) for the block, then as it was."""
    was_training = module.training
    module.eval()
    try:
        yield
    finally:
        module.train(was_training)


def cartoonize(generator: nn.Module, image: np.ndarray | Sequence[np.ndarray],
               tile: int = TILE, overlap: int = OVERLAP, batch_size: int = 4,
               device: str | torch.device | None = None,
               precision: str = "fp32") -> np.ndarray | list[np.ndarray]:
    """Run ``generator`` on an H x W x 3 uint8 RGB image (or a list of them): same shape out.

    Any H and W: the image is reflect-padded at the bottom and right to a multiple of 4 (at
    least 8) and cropped back, which keeps the official code's top-left alignment. An image
    larger than ``tile`` on a side is cut into ``tile`` x ``tile`` tiles overlapping by at
    least ``overlap`` pixels (both multiples of 4), whose outputs are blended with
    raised-cosine ramps: memory is bounded by the tile (fp32 on a CPU: about 1 GB per
    megapixel of tile) and no seam shows.

    Tiles are not free: instance normalization gives every tile its own statistics, so a
    tiled result differs from the untiled one, the more so the smaller a part of the image a
    tile is. Measured with the official Hayao generator against untiled runs: tiles of 512
    (overlap 64) land at 18 to 24 dB PSNR on 0.5 to 2 megapixel photos (visible tone shifts),
    1024 (overlap 128) at 26 to 30 dB on 2 megapixels, and 2048 (overlap 128 or 256) at 26 dB on a
    3000x2248 photo, with no visible seam and mild tone differences. Hence the default of
    2048: most photos and 1080p frames run untiled, exactly as the authors' code would; lower
    ``tile`` only when memory demands it. Tiles and same-sized images go through the
    generator ``batch_size`` at a time, never more pixels at once than one full tile.

    ``device``: where to run (the generator is moved there in place); ``None`` keeps the
    generator's. ``precision``: ``"fp32"``, or ``"bf16"`` / ``"fp16"`` autocast. Inputs follow
    the generator's memory format (``generator.to(memory_format=torch.channels_last)`` runs
    channels-last). The generator runs in eval mode and is left in the mode it was in.
    """
    single = isinstance(image, np.ndarray)
    images = [image] if single else list(image)
    for index, picture in enumerate(images):
        if not (isinstance(picture, np.ndarray) and picture.dtype == np.uint8
                and picture.ndim == 3 and picture.shape[2] == 3):
            what = (f"{picture.dtype} array of shape {picture.shape}"
                    if isinstance(picture, np.ndarray) else type(picture).__name__)
            raise ValueError(f"image {index} is a {what}; cartoonize takes H x W x 3 uint8 RGB "
                             "arrays (a list of them for a batch)")
    if tile % 4 or overlap % 4 or not 0 < overlap <= tile // 2:
        raise ValueError(f"tile={tile}, overlap={overlap}: both must be multiples of 4, with "
                         "0 < overlap <= tile / 2")
    if device is None:
        device = next(generator.parameters()).device
    device = torch.device(device)
    generator.to(device)
    autocast = _autocast(device, precision)
    first_weight = next(generator.parameters())
    memory_format = (torch.channels_last
                     if first_weight.dim() == 4 and not first_weight.is_contiguous()
                     and first_weight.is_contiguous(memory_format=torch.channels_last)
                     else torch.contiguous_format)

    padded, canvases, jobs = [], [], []
    for index, picture in enumerate(images):
        height, width = picture.shape[:2]
        padded_height, padded_width = (max(8, math.ceil(side / 4) * 4) for side in (height, width))
        padded.append(np.pad(picture, ((0, padded_height - height), (0, padded_width - width),
                                       (0, 0)), mode="reflect" if min(height, width) > 1
                             else "edge"))
        canvases.append((np.zeros((padded_height, padded_width, 3), np.float32),
                         np.zeros((padded_height, padded_width, 1), np.float32)))
        tile_height, tile_width = min(tile, padded_height), min(tile, padded_width)
        for top in _tile_starts(padded_height, tile, overlap):
            for left in _tile_starts(padded_width, tile, overlap):
                jobs.append((index, top, left, tile_height, tile_width))

    groups: dict[tuple[int, int], list] = {}
    for job in jobs:
        groups.setdefault(job[3:], []).append(job)
    with _evaluating(generator), torch.inference_mode():
        for (tile_height, tile_width), group in groups.items():
            # never more pixels in one batch than in one full tile: memory stays bounded
            per_batch = max(1, min(batch_size, tile * tile // (tile_height * tile_width)))
            for first in range(0, len(group), per_batch):
                chunk = group[first:first + per_batch]
                batch = np.stack([padded[index][top:top + tile_height, left:left + tile_width]
                                  for index, top, left, _, _ in chunk])
                x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float() / 127.5 - 1
                x = x.contiguous(memory_format=memory_format)
                with autocast:
                    y = generator(x)
                y = ((y.float().clamp(-1, 1) + 1) * 127.5).permute(0, 2, 3, 1).cpu().numpy()
                for (index, top, left, _, _), out in zip(chunk, y, strict=True):
                    total, weight = canvases[index]
                    ramp = (_ramp(total.shape[0], top, tile_height, overlap)[:, None, None]
                            * _ramp(total.shape[1], left, tile_width, overlap)[None, :, None])
                    total[top:top + tile_height, left:left + tile_width] += out * ramp
                    weight[top:top + tile_height, left:left + tile_width] += ramp
    results = []
    for picture, (total, weight) in zip(images, canvases, strict=True):
        height, width = picture.shape[:2]
        blended = total[:height, :width] / weight[:height, :width]
        results.append(np.clip(np.rint(blended), 0, 255).astype(np.uint8))
    return results[0] if single else results


# -- files and folders ---------------------------------------------------------------------------

def cartoonize_files(inputs: Sequence[str | os.PathLike], style: str, out: str | os.PathLike,
                     image_format: str = "png", **options) -> tuple[list[Path], list[str]]:
    """Cartoonize image files and folders (searched recursively) into ``out``.

    ``style``: a released style or a generator file (see :func:`load_official`). Each output
    is ``out/<relative folder>/<name>_<style>.<image_format>``, written atomically. A file that
    cannot be read is skipped and reported, never fatal. ``options`` go to :func:`cartoonize`
    (``tile``, ``overlap``, ``device``, ``precision``, ...). Returns (written paths, skipped
    lines "path: reason").
    """
    from tqdm.auto import tqdm

    from cglib import images as image_files

    device = options.pop("device", None)
    device = env.pick_device() if device in (None, "auto") else torch.device(device)
    generator = load_official(style, device)
    label = style.lower() if style.lower() in STYLES else Path(style).stem
    out = Path(out)
    jobs: list[tuple[Path, Path]] = []  # (image file, output path)
    skipped: list[str] = []
    for item in map(Path, inputs):
        if item.is_dir():
            try:
                found = image_files.list_images(item)
            except FileNotFoundError as error:
                skipped.append(str(error))
                continue
            jobs += [(path, out / path.relative_to(item).parent) for path in found]
        elif item.is_file():
            jobs.append((item, out))
        else:
            skipped.append(f"{item}: no such file or folder")
    written = []
    for path, folder in tqdm(jobs, desc=f"cartoonize ({label})", unit="image"):
        try:
            image = image_files.read_image(path)
        except image_files.ImageError as error:
            skipped.append(f"{error.path}: {error.reason}")
            continue
        cartoon = cartoonize(generator, image, device=device, **options)
        target = folder / f"{path.stem}_{label}.{image_format}"
        written.append(image_files.write_image(target, cartoon))
    return written, skipped
