"""cglib's entry points for ``torch.hub``: CartoonGAN's released generators, by style.

::

    import torch

    generator = torch.hub.load("cglib-tutorial/cglib", "generator", style="hayao")
    cartoonize = torch.hub.load("cglib-tutorial/cglib", "cartoonize", style="shinkai")
    cartoon = cartoonize(photo)  # H x W x 3 uint8 RGB in, the same shape out

The repository name is ``cglib.env.REPOSITORY``. Weights go through cglib's checked download
and cache (downloaded once, SHA-256 checked, kept in ``CGLIB_WEIGHTS_DIR`` or a per-user cache
folder); ``style`` may also be the path of a generator file.
"""

from __future__ import annotations

import collections.abc
import inspect

import torch

from cglib import pretrained as _pretrained
from cglib.inference import cartoonize as _cartoonize  # the one import of the function used

dependencies = ["torch", "numpy", "cv2", "PIL", "tqdm"]


def generator(style: str = "hayao", device: str = "cpu") -> torch.nn.Module:
    """CartoonGAN's released generator for ``style``, in eval mode on ``device``.

    ``style``: ``"hayao"``, ``"hosoda"``, ``"paprika"`` or ``"shinkai"`` (the authors' weights,
    downloaded once and SHA-256 checked), or the path of a generator file (the official format,
    or one saved by cglib's training). The generator takes and returns (N, 3, H, W) float RGB
    in [-1, 1]; sides that are not multiples of 4 come back up to 3 pixels larger (keep the
    top-left H x W)::

        generator = torch.hub.load("cglib-tutorial/cglib", "generator", style="hayao")
        with torch.no_grad():
            cartoon = generator(photo)  # photo: (1, 3, 256, 256) float RGB in [-1, 1]
    """
    return _pretrained.load(style, device)


def cartoonize(style: str = "hayao", device: str = "cpu", **options) -> collections.abc.Callable:
    """A function that cartoonizes an H x W x 3 uint8 RGB array (or a list of them) with the
    released ``style`` generator on ``device`` and returns the same shape(s), uint8 RGB.

    Any size from 8 pixels a side, exactly as the authors' network; very large images in tiles
    that give the same result. ``options`` (``tile``, ``precision``, ``max_side``,
    ``keep_colors``, ``strength``, ...) go to :func:`cglib.inference.cartoonize` on every
    call; ``style`` as in :func:`generator`::

        cartoonize = torch.hub.load("cglib-tutorial/cglib", "cartoonize", style="hayao")
        cartoon = cartoonize(photo)  # photo: H x W x 3 uint8 RGB, e.g. from PIL or imageio
    """
    inspect.signature(_cartoonize).bind(None, None, **options)  # a wrong option fails now
    model = generator(style, device)

    def cartoonize_images(images):
        """H x W x 3 uint8 RGB array (or a list of them) -> its cartoon (or theirs)."""
        return _cartoonize(model, images, **options)

    return cartoonize_images
