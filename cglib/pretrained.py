"""The authors' released generators, and the files cglib saves its own generators in.

:func:`load_official` turns an official weight file (four styles: Hayao, Hosoda, Paprika,
Shinkai) into a :class:`cglib.models.Generator` holding exactly the released tensors. The
official model works in BGR; the channel swap is folded into its first and last convolutions
here, so the result takes and returns RGB like every cglib generator. Files are looked for in
``cglib.env.paths().weights`` (``CGLIB_WEIGHTS_DIR``, else a per-user cache folder) and
downloaded there from a public mirror when missing, with their SHA-256 checked.

:func:`save_generator` and :func:`load_generator` keep a generator trained with cglib (with its
width, depth and normalization) in one safe file; :func:`load` takes either kind.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch

from cglib import download, env, files, inference
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
    1e-9 as in the PyTorch conversion (the Torch original used 1e-5). The width follows the
    tensors (64 in the released files).
    """
    ours = {key: state[official] for official, key in _official_keys().items()}
    ours["flat.conv.weight"] = ours["flat.conv.weight"][:, _BGR]
    ours["output.conv.weight"] = ours["output.conv.weight"][_BGR]
    ours["output.conv.bias"] = ours["output.conv.bias"][_BGR]
    generator = Generator(width=ours["flat.conv.weight"].shape[0], epsilon=epsilon)
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
    """The official ``style`` weights in the weights folder, downloaded there from
    :data:`MIRROR_URL` unless present (:func:`cglib.download.download`: resumable, with a
    progress bar, kept only when its SHA-256 matches :data:`SHA256`). A file already there is
    used as it is (:func:`load_official` checks its structure). Without a network, raises
    RuntimeError naming the URL, the folder and ``CGLIB_WEIGHTS_DIR``."""
    style = _style(style)
    path = weights_file(style)
    if path.is_file():
        return path
    try:
        return download.download(MIRROR_URL.format(style=style), path, sha256=SHA256[style],
                                 description=f"{style} weights")
    except RuntimeError as error:
        raise RuntimeError(f"{error}; or set the environment variable CGLIB_WEIGHTS_DIR to a "
                           f"folder holding {path.name}") from None


def _read_state(path: Path) -> dict:
    """The dict a weight file holds, loaded safely (``weights_only``); ValueError naming the
    file when it is not one."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # pickle, zip and torch errors alike mean an unusable file
        raise ValueError(f"{path} is not a torch weight file (truncated, corrupt or something "
                         "else): delete it and download or save it again") from None
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds a {type(state).__name__}, not a generator's weights; "
                         "give an official CartoonGAN file or one written by save_generator")
    return state


def _existing_file(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path} {files.describe_missing(path)}; give a style "
                                f"({', '.join(STYLES)}) or the path of a generator file")
    return path


def load_official(style_or_path: str | os.PathLike, device: str | torch.device = "cpu",
                  epsilon: float = 1e-9) -> Generator:
    """A :class:`Generator` holding the authors' released weights, in eval mode on ``device``.

    ``style_or_path``: ``"hayao"``, ``"hosoda"``, ``"paprika"`` or ``"shinkai"`` (the file is
    found in the weights folder or downloaded, see :func:`download_official`), or the path of
    a file in the official format (checked by :func:`check_official`; ``epsilon`` is its
    instance norm's). The result takes and returns RGB (N, 3, H, W) in [-1, 1]. A file that is
    not a torch file, or has missing keys or wrong shapes, raises ValueError naming it and the
    fix; a file written by :func:`save_generator` is pointed to :func:`load_generator`.
    """
    if str(style_or_path).lower() in STYLES:
        path = download_official(str(style_or_path))
    else:
        path = _existing_file(style_or_path)
    state = _read_state(path)
    if state.get("format") == CGLIB_FORMAT:
        raise ValueError(f"{path} is a generator trained with cglib, not an official file; "
                         "load it with cglib.pretrained.load_generator")
    check_official(state, path)
    return from_official(state, epsilon).to(device).eval()


def load_available(styles: list[str] | tuple[str, ...] = STYLES,
                   device: str | torch.device = "cpu", download: bool = True
                   ) -> dict[str, Generator]:
    """The released generators of ``styles`` that can be had (:func:`load_official`), by
    style; ``download``: False uses only files already in the weights folder. Each style left
    out is printed with the reason."""
    found = {}
    for style in styles:
        if not (download or weights_available(style)):
            print(f"{style}: skipped, {weights_file(style)} is absent (not downloaded here)")
            env.note_degraded(f"released style {style}", "its weights are not here")
            continue
        try:
            found[style] = load_official(style, device=device)
        except (RuntimeError, ValueError) as error:
            print(f"{style}: skipped ({error})")
            env.note_degraded(f"released style {style}", "its weights could not be had")
    return found


def load_generator(path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """A :class:`Generator` from a file written by :func:`save_generator` (a training run's
    ``generator.pt``), with the settings it was saved with, in eval mode on ``device``."""
    path = _existing_file(path)
    state = _read_state(path)
    if state.get("format") != CGLIB_FORMAT:
        raise ValueError(f"{path} is not a generator saved by cglib; for the authors' released "
                         "weights use cglib.pretrained.load_official")
    return _from_cglib_state(state, path).to(device).eval()


def _from_cglib_state(state: dict, path: Path) -> Generator:
    """The generator a :func:`save_generator` file's ``state`` holds; ValueError naming
    ``path`` when the file is damaged."""
    try:
        generator = Generator(**state["config"])
        generator.load_state_dict(state["state_dict"])
    except (KeyError, TypeError, RuntimeError, ValueError) as error:
        raise ValueError(f"{path} is a damaged {CGLIB_FORMAT} file ({error}); save the "
                         "generator again with cglib.pretrained.save_generator") from None
    return generator


def load(style_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """What the command line's ``--style`` takes: a released style or an official file
    (:func:`load_official`), or a generator saved by cglib (:func:`load_generator`). A file is
    read once."""
    if str(style_or_path).lower() in STYLES:
        return load_official(style_or_path, device)
    path = _existing_file(style_or_path)
    state = _read_state(path)
    if state.get("format") == CGLIB_FORMAT:
        return _from_cglib_state(state, path).to(device).eval()
    check_official(state, path)
    return from_official(state).to(device).eval()


def save_generator(generator: Generator, path: str | os.PathLike) -> Path:
    """Write ``generator`` as ``{"format": "cglib-generator", "config": ..., "state_dict": ...}``
    (CPU tensors; loads with ``torch.load(path, weights_only=True)`` and with
    :func:`load_generator`), atomically. Returns ``path``."""
    state = {
        "format": CGLIB_FORMAT,
        "config": dict(generator.config),
        "state_dict": {key: tensor.detach().cpu().contiguous()
                       for key, tensor in generator.state_dict().items()},
    }
    with files.atomic_write(path) as file:
        torch.save(state, file)
    return Path(path)


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
    return inference.cartoonize(generator, list(images))
