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
import inspect
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cglib import download, env, files, inference, models
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

#: The released generators' constructor arguments (the paper's generator; epsilon as in the
#: PyTorch conversion, see :func:`from_official`).
OFFICIAL_ARCHITECTURE = {"width": 64, "residual_blocks": 8, "norm": "instance", "epsilon": 1e-9}


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
    tensors with the official shapes. The fix it names: for a released file (named
    ``cartoongan-<style>.pth``), download it again; for any other, the formats accepted."""
    if Path(path).name in {f"cartoongan-{style}.pth" for style in STYLES}:
        fix = ("download it again (delete the file and call load_official with its style) or "
               "use an untouched copy")
    else:
        fix = ("give a released style, an official file, or a generator of cglib: saved with "
               "save_generator (a training run's generator.pt) or as torch.save("
               "generator.state_dict()) of a cglib.models.Generator")
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
    if _cglib_parts(state) is not None:
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
    ``generator.pt``), with the settings it was saved with, or from a plain
    ``torch.save(generator.state_dict())`` of a :class:`cglib.models.Generator` (its settings
    read off its tensors: :func:`plain_config`), in eval mode on ``device``. The settings are
    checked against the tensors before anything is built (:func:`check_config`)."""
    path = _existing_file(path)
    parts = _cglib_parts(_read_state(path))
    if parts is None:
        raise ValueError(f"{path} is not a generator saved by cglib; for the authors' released "
                         "weights use cglib.pretrained.load_official")
    return _from_cglib_parts(*parts, path).to(device).eval()


def plain_config(state: dict) -> dict | None:
    """The :class:`Generator` settings that a plain state dict of one implies (the flat
    convolution's width, the residual blocks counted, batch normalization where it keeps
    running statistics; the default epsilon), or None when ``state`` is not one."""
    weight = state.get("flat.conv.weight")
    if not isinstance(weight, torch.Tensor) or weight.dim() != 4:
        return None
    blocks = {key.split(".")[1] for key in state if key.startswith("residual_blocks.")}
    return {"width": weight.shape[0], "residual_blocks": len(blocks),
            "norm": "batch" if "flat.norm.running_mean" in state else "instance"}


def _cglib_parts(state: dict) -> tuple[object, object] | None:
    """(settings, tensors) of a generator of cglib: a :func:`save_generator` file or a plain
    state dict; None for anything else (an official file, say)."""
    if state.get("format") == CGLIB_FORMAT:
        return state.get("config"), state.get("state_dict")
    config = plain_config(state)
    return None if config is None else (config, state)


def check_config(config: object, weights: object, path: str | os.PathLike) -> None:
    """ValueError naming ``path`` and the field unless the saved settings ``config`` are
    those of a :class:`Generator` that fits ``weights`` (its state dict): known fields of the
    right types and ranges, the width and the number of residual blocks of the tensors, then
    every tensor's shape (compared on the ``meta`` device, which allocates nothing). So a
    crafted file cannot make the loader build more than the tensors it holds."""
    def refuse(problem: str) -> ValueError:
        return ValueError(f"{path} is a damaged {CGLIB_FORMAT} file ({problem}); save the "
                          "generator again with cglib.pretrained.save_generator")

    if not isinstance(config, dict) or not isinstance(weights, dict):
        raise refuse("its config and state_dict are not both dicts")
    defaults = {name: parameter.default
                for name, parameter in inspect.signature(Generator).parameters.items()}
    unknown = sorted(map(str, set(config) - set(defaults)))
    if unknown:
        raise refuse(f"its config has the unknown field {unknown[0]}")
    settings = {**defaults, **config}
    implied = plain_config(weights)
    if implied is None:
        raise refuse("its state_dict has no flat.conv.weight of 4 dimensions")
    for name in ("width", "residual_blocks"):
        if type(settings[name]) is not int or settings[name] != implied[name]:
            raise refuse(f"its config's {name}={settings[name]!r} is not its tensors' "
                         f"{implied[name]}")
    if settings["norm"] not in models.NORMS:
        raise refuse(f"its config's norm={settings['norm']!r} is not one of "
                     f"{', '.join(models.NORMS)}")
    if type(settings["epsilon"]) not in (int, float) or not 0 < settings["epsilon"] < 1:
        raise refuse(f"its config's epsilon={settings['epsilon']!r} is not a number between "
                     "0 and 1")
    with torch.device("meta"):
        expected = {key: tuple(tensor.shape)
                    for key, tensor in Generator(**settings).state_dict().items()}
    for key, shape in expected.items():
        tensor = weights.get(key)
        found = tuple(tensor.shape) if isinstance(tensor, torch.Tensor) else "missing"
        if found != shape:
            raise refuse(f"its tensor {key} is {found}, expected {shape}")


def _from_cglib_parts(config: object, weights: object, path: Path) -> Generator:
    """The generator of a cglib file's settings and tensors, checked first
    (:func:`check_config`); ValueError naming ``path`` when they do not fit."""
    check_config(config, weights, path)
    generator = Generator(**config)
    try:
        generator.load_state_dict(weights)
    except (RuntimeError, ValueError) as error:  # a key that no generator has, say
        raise ValueError(f"{path} is a damaged {CGLIB_FORMAT} file "
                         f"({' '.join(str(error).split())}); save the generator again with "
                         "cglib.pretrained.save_generator") from None
    return generator


def load(style_or_path: str | os.PathLike, device: str | torch.device = "cpu") -> Generator:
    """What the command line's ``--style`` takes: a released style or an official file
    (:func:`load_official`), or a generator of cglib (:func:`load_generator`). A file is read
    once."""
    if str(style_or_path).lower() in STYLES:
        return load_official(style_or_path, device)
    path = _existing_file(style_or_path)
    state = _read_state(path)
    parts = _cglib_parts(state)
    if parts is not None:
        return _from_cglib_parts(*parts, path).to(device).eval()
    check_official(state, path)
    return from_official(state).to(device).eval()


def architecture(style_or_path: str | os.PathLike) -> dict[str, Any]:
    """The constructor arguments of the generator that :func:`load` would return for
    ``style_or_path`` (``width``, ``residual_blocks``, ``norm``, ``epsilon``), checked
    (:func:`check_config`) but not built; a released style needs no file at all."""
    if str(style_or_path).lower() in STYLES:
        return dict(OFFICIAL_ARCHITECTURE)
    path = _existing_file(style_or_path)
    state = _read_state(path)
    parts = _cglib_parts(state)
    if parts is None:
        check_official(state, path)
        return dict(OFFICIAL_ARCHITECTURE)
    check_config(*parts, path)
    return {**Generator().config, **parts[0]}


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
