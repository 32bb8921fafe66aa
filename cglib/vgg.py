"""The content network: a frozen VGG19 cut at conv4_4, as the paper's content loss uses it.

The paper (Section 3.2.2) compares high-level feature maps of a VGG network pre-trained on
ImageNet: layer conv4_4 of VGG19, taken before its ReLU in the authors' code.
:class:`VGG19Features` is that network: RGB in [-1, 1] in, (N, 512, H/8, W/8) features out.

Where the weights come from (``weights=``):

- ``"imagenet"``: torchvision's VGG19 ImageNet weights (``VGG19_Weights.IMAGENET1K_V1``,
  :data:`VGG19_URL`). Looked for offline first, in the file named by the environment variable
  ``CGLIB_VGG19_WEIGHTS``, then in torch's hub cache (``torch.hub.get_dir()/checkpoints/
  vgg19-dcbb9e9d.pth``); downloaded by torchvision into that cache only when ``download=True``.
- ``"random"``: seeded random filters, for CI and the smoke profile only. The content loss is
  then not the paper's, so asking for it warns.

Input normalization differs from the authors' on purpose. The authors' Caffe VGG19 takes BGR
images in 0..255 minus the mean pixel [103.939, 116.779, 123.68] (BGR order), with no division
by a standard deviation. torchvision's weights were trained on RGB in 0..1 minus the ImageNet
mean [0.485, 0.456, 0.406] divided by the std [0.229, 0.224, 0.225], so that is what this
module applies. The two networks are different trainings with differently scaled inputs, so
their features have different magnitudes and the same content weight w = 10 balances the two
losses differently from the authors' runs (an ablation over the weight shows by how much).

No resizing: the authors resized images to 224 x 224 before VGG (the size VGG was trained
at). Here the features are of the image as given (256 x 256 in training): the convolutions
are local, so any size works, both images of a content-loss pair are treated alike either
way, and skipping the resize spares an interpolation in the generator's gradient path.
``input_size=224`` restores the authors' resize for an ablation.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models import vgg as torchvision_vgg

from cglib import env

#: torchvision's VGG19 ImageNet weights, the file ``"imagenet"`` loads.
VGG19_URL = torchvision.models.VGG19_Weights.IMAGENET1K_V1.url
#: Environment variable naming a local copy of that file (full VGG19 or its ``features`` only).
WEIGHTS_ENV = "CGLIB_VGG19_WEIGHTS"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHT_CHOICES = ("imagenet", "random")


def _conv_layer_indices() -> dict[str, int]:
    """``{"conv1_1": 0, ..., "conv4_4": 25, ..., "conv5_4": 34}``: where each convolution sits
    in torchvision's ``vgg19().features`` (every conv is followed by its ReLU)."""
    indices, block, number, index = {}, 1, 1, 0
    for item in torchvision_vgg.cfgs["E"]:
        if item == "M":
            block, number, index = block + 1, 1, index + 1
        else:
            indices[f"conv{block}_{number}"] = index
            number, index = number + 1, index + 2
    return indices


#: Index in ``vgg19().features`` of each convolution (conv4_4 is 25, its ReLU 26).
CONV_LAYERS = _conv_layer_indices()


class VGGWeightsNotFound(FileNotFoundError):
    """The VGG19 ImageNet weights are neither on disk nor downloadable."""


def hub_cache_file() -> Path:
    """Where torchvision caches the VGG19 ImageNet weights: ``<torch hub>/checkpoints/...``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / VGG19_URL.rsplit("/", 1)[-1]


def find_vgg19_weights() -> Path | None:
    """The local file of the VGG19 ImageNet weights, or None if there is none.

    ``CGLIB_VGG19_WEIGHTS`` wins when set (and must then name an existing file); else torch's
    hub cache (:func:`hub_cache_file`).
    """
    named = os.environ.get(WEIGHTS_ENV, "").strip()
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise VGGWeightsNotFound(
                f"the environment variable {WEIGHTS_ENV}={named!r} names no file; point it at "
                f"a copy of {VGG19_URL} or unset it"
            )
        return path
    cached = hub_cache_file()
    return cached if cached.is_file() else None


def _not_found_message(reason: str) -> str:
    return (
        f"the VGG19 ImageNet weights for the content loss are not available ({reason}). "
        f"Download {VGG19_URL} and put it at {hub_cache_file()} (torch's hub cache), or "
        f"anywhere and set {WEIGHTS_ENV} to its path; or allow the download (download=True) "
        "on a machine with internet. weights='random' runs without them, but the content "
        "loss is then not the paper's"
    )


def resolve_vgg_weights(
    preference: str = "auto", download: bool = True, fallback: str | None = None
) -> str:
    """Decide which VGG19 weights a run uses; returns ``"imagenet"`` or ``"random"``.

    ``preference``: ``"random"`` (returned as is: only an explicit request gets random
    filters; the smoke profile passes it), ``"imagenet"`` or ``"auto"`` (the same: the paper's
    ImageNet weights). Those are checked now: found offline (:func:`find_vgg19_weights`) or,
    with ``download=True``, downloaded into torch's hub cache. If they cannot be had, raise
    :class:`VGGWeightsNotFound` saying where to put the file, unless ``fallback="random"``
    asks for random filters instead: then warn (UserWarning) and return ``"random"``.
    """
    if preference not in ("auto", *WEIGHT_CHOICES):
        raise ValueError(
            f"VGG weights {preference!r} are not a choice; use 'auto', 'imagenet' or 'random'"
        )
    if fallback not in (None, "random"):
        raise ValueError(f"fallback={fallback!r}: use None (raise) or 'random'")
    if preference == "random":
        return "random"
    try:
        if find_vgg19_weights() is None:
            if not download:
                raise VGGWeightsNotFound(_not_found_message("no local file and download=False"))
            _download()
        return "imagenet"
    except VGGWeightsNotFound as error:
        if fallback != "random":
            raise
        warnings.warn(
            f"{error}. Falling back to random VGG filters as asked (fallback='random'): "
            "feature maps and content losses are of random filters, not the paper's",
            UserWarning,
            stacklevel=2,
        )
        env.note_degraded("content network", "random VGG19 filters, not the ImageNet weights "
                          "(not on disk and not downloaded here)")
        return "random"


def _download() -> dict[str, torch.Tensor]:
    """torchvision's own download into torch's hub cache; the full VGG19 state dict."""
    try:
        return torchvision.models.VGG19_Weights.IMAGENET1K_V1.get_state_dict(progress=True)
    except (OSError, RuntimeError) as error:  # URLError is an OSError
        raise VGGWeightsNotFound(_not_found_message(f"the download failed: {error}")) from error


def _features_state(state: dict[str, torch.Tensor], count: int,
                    source: str) -> dict[str, torch.Tensor]:
    """Keys ``"<index>.weight"`` / ``"<index>.bias"`` of ``features[:count]`` from a state dict
    of the full VGG19 (``features.<index>.*``) or of its ``features`` alone (``<index>.*``)."""
    wanted = {
        f"{index}.{kind}"
        for index in CONV_LAYERS.values()
        if index < count
        for kind in ("weight", "bias")
    }
    found = {}
    for key, value in state.items():
        short = key.removeprefix("features.")
        if short in wanted:
            found[short] = value
    missing = sorted(wanted - found.keys(), key=lambda k: int(k.split(".")[0]))
    if missing:
        raise ValueError(
            f"{source} is not a VGG19 state dict: it lacks {', '.join(missing[:4])}"
            f"{' ...' if len(missing) > 4 else ''}; use torchvision's {VGG19_URL} (or a state "
            "dict of vgg19().features)"
        )
    return found


def _load_imagenet_state(count: int, download: bool) -> dict[str, torch.Tensor]:
    path = find_vgg19_weights()
    if path is not None:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as error:  # a truncated or foreign file: say which and how to fix
            raise ValueError(
                f"{path} could not be read as VGG19 weights ({error}); replace it with a "
                f"fresh copy of {VGG19_URL}"
            ) from error
        return _features_state(state, count, str(path))
    if not download:
        raise VGGWeightsNotFound(_not_found_message("no local file and download=False"))
    return _features_state(_download(), count, VGG19_URL)


class VGG19Features(nn.Module):
    """Frozen VGG19 up to ``layer`` (conv4_4 by default): the content network of the paper.

    ``weights``: ``"imagenet"`` (the paper's choice; see the module docstring for where the
    file comes from, and ``download`` whether it may be fetched) or ``"random"`` (seeded by
    ``seed``, warns: not the paper's content loss). ``before_relu=True`` (the authors' choice)
    returns the convolution's output; ``False`` applies its ReLU. ``input_size``: None (no
    resize, the default) or a side to resize to first (224 = the authors' setting).

    Frozen: no parameter requires a gradient, and the module stays in eval mode even when
    ``.train()`` is called on it or on a module holding it. Gradients still flow to the input.
    Works in channels_last and under autocast (its output then has autocast's dtype).
    """

    def __init__(
        self,
        weights: str = "imagenet",
        before_relu: bool = True,
        layer: str = "conv4_4",
        download: bool = True,
        input_size: int | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if layer not in CONV_LAYERS:
            raise ValueError(f"layer {layer!r} is not a VGG19 convolution; use one of "
                             f"{', '.join(CONV_LAYERS)}")
        if weights not in WEIGHT_CHOICES:
            raise ValueError(f"VGG weights {weights!r} are not a choice; use 'imagenet' or "
                             "'random' (resolve_vgg_weights() picks one)")
        count = CONV_LAYERS[layer] + (1 if before_relu else 2)
        self.features = torchvision_vgg.make_layers(torchvision_vgg.cfgs["E"])[:count]
        if weights == "imagenet":
            self.features.load_state_dict(_load_imagenet_state(count, download))
        else:
            warnings.warn(
                "VGG19Features(weights='random'): the filters are random, so its features and "
                "the content loss built on them are not the paper's (use weights='imagenet')",
                UserWarning,
                stacklevel=2,
            )
            _init_random(self.features, seed)
        self.weights, self.layer, self.before_relu = weights, layer, before_relu
        self.input_size = input_size
        # (x + 1) / 2 to 0..1, then ImageNet's (x - mean) / std, folded into one affine map
        mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
        std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
        self.register_buffer("scale", 0.5 / std, persistent=False)
        self.register_buffer("shift", (0.5 - mean) / std, persistent=False)
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> VGG19Features:
        """Stays in eval mode whatever ``mode`` says: the content network is frozen."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) float RGB in [-1, 1] -> (N, C, H/2^k, W/2^k) features; for conv4_4
        (N, 512, H/8, W/8) (floor division where H, W are not multiples of 8)."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(
                f"VGG19Features takes (N, 3, H, W) RGB images in [-1, 1]; got shape "
                f"{tuple(images.shape)}"
            )
        if self.input_size is not None:
            images = F.interpolate(images, size=(self.input_size, self.input_size),
                                   mode="bilinear", align_corners=False, antialias=True)
        return self.features(images * self.scale + self.shift)

    def extra_repr(self) -> str:
        return (f"weights={self.weights!r}, layer={self.layer!r}, "
                f"before_relu={self.before_relu}, input_size={self.input_size}")


def _init_random(features: nn.Sequential, seed: int) -> None:
    """torchvision's VGG initialization (Kaiming normal, fan-out; zero biases), seeded, so
    random features are the same on every run and machine."""
    rng = torch.Generator().manual_seed(seed)
    for module in features:
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu",
                                    generator=rng)
            nn.init.zeros_(module.bias)
