"""Measuring cartoonization on held-out photos, for the ablation table.

The paper judges results by eye; these numbers make its claims checkable. Images are
H x W x 3 uint8 RGB unless noted. Each measure, and which way is better:

- :func:`psnr`, :func:`ssim`: two images alike (e.g. a trained generator's output against a
  released generator's on the same photo); higher = closer.
- :func:`edge_strength`: one image, mean gradient along its Canny edges; higher = crisper.
- :func:`colour_flatness`: one image, colours needed to cover 90% of its pixels; lower =
  flatter shading.
- :func:`content_distance`: photo against output, L1 distance of VGG19 conv4_4 features;
  lower = more of the photo's content kept.
- :func:`frechet_distance` (FID-like), :func:`kernel_distance` (KID-like): two sets of pooled
  VGG features (:func:`pooled_features`); lower = closer distributions.

:func:`measure` averages the per-image measures over a list of images; :func:`evaluate`
cartoonizes photos with a generator first, then measures the outputs.
"""

from __future__ import annotations

import math

import cv2
import numpy as np
import torch
from skimage.metrics import structural_similarity
from torch import nn

from cglib import edges, images, inference
from cglib.losses import ContentLoss

#: Which way each measure is better (True: higher), by the names :func:`measure` and
#: :func:`epoch_measures` give them.
HIGHER_IS_BETTER: dict[str, bool] = {
    "psnr": True, "ssim": True, "psnr_to_reference": True, "ssim_to_reference": True,
    "ssim_to_photo": True, "edge_strength": True, "colour_flatness": False,
    "content_distance": False, "frechet_distance": False, "kernel_distance": False,
}


def _check_pair(a: np.ndarray, b: np.ndarray, name: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{name} compares images of one shape; got {a.shape} and {b.shape} "
                         "(resize or crop one to the other first)")


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """Peak signal-to-noise ratio in dB between two H x W x 3 uint8 images, or two float arrays
    of one shape in [-1, 1] (the models' range, e.g. (N, 3, H, W)) mapped to [0, 255] first:
    10 log10(255^2 / MSE). Higher = closer; ``inf`` for identical images; about 30 dB and up
    is hard to tell apart by eye."""
    _check_pair(a, b, "psnr")
    if (a.dtype == np.uint8) != (b.dtype == np.uint8):
        raise ValueError(f"psnr compares two uint8 images or two float arrays in [-1, 1]; got "
                         f"{a.dtype} and {b.dtype} (convert one to the other's range first)")
    scale = 1.0 if a.dtype == np.uint8 else 127.5
    mse = np.mean(((a.astype(np.float64) - b.astype(np.float64)) * scale) ** 2)
    return math.inf if mse == 0 else float(10 * np.log10(255.0**2 / mse))


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Structural similarity of two H x W x 3 uint8 images (at least 7 x 7), averaged over the
    channels (scikit-image, data range 255). 1 = identical, lower = less alike."""
    _check_pair(a, b, "ssim")
    return float(structural_similarity(a, b, channel_axis=2, data_range=255))


def edge_strength(image: np.ndarray) -> float:
    """How crisp the edges of an H x W x 3 uint8 RGB image are: the mean gradient magnitude,
    in gray levels per pixel, along its Canny edges (those the edge-promoting data uses,
    thresholds 100 and 200). Higher = crisper; blurring lowers it; 0.0 where there are no
    edges (a flat image). The gradient is the 3x3 Sobel divided by 8, so that a ramp rising
    by g per pixel reads g."""
    gray = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float64)
    gradient_x = cv2.Sobel(gray, cv2.CV_64F, 1, 0, ksize=3) / 8
    gradient_y = cv2.Sobel(gray, cv2.CV_64F, 0, 1, ksize=3) / 8
    on_edges = edges.canny_edges(image) > 0
    if not on_edges.any():
        return 0.0
    return float(np.hypot(gradient_x, gradient_y)[on_edges].mean())


def colour_flatness(image: np.ndarray, coverage: float = 0.9, levels: int = 16) -> float:
    """How flat the shading of an H x W x 3 uint8 RGB image is: the number of colours, after
    quantizing each channel to ``levels`` levels (16: a palette of 4,096), that together
    cover ``coverage`` of the pixels. Lower = flatter: 1 for a flat image (the minimum);
    smooth photographic gradients and texture need hundreds to thousands."""
    if not 0 < coverage <= 1:
        raise ValueError(f"coverage={coverage} must be in (0, 1], e.g. 0.9 for 90% of pixels")
    quantized = (image.astype(np.int64) * levels) // 256
    index = (quantized[..., 0] * levels + quantized[..., 1]) * levels + quantized[..., 2]
    counts = np.sort(np.bincount(index.ravel()))[::-1]
    needed = math.ceil(coverage * index.size - 1e-9)
    return float(np.searchsorted(np.cumsum(counts), needed) + 1)


def _to_tensor(image: np.ndarray, device: torch.device) -> torch.Tensor:
    """H x W x 3 uint8 RGB -> (1, 3, H, W) float32 in [-1, 1] on ``device``."""
    return images.to_tensor(image).to(device)


def content_distance(vgg: nn.Module, photo: np.ndarray, output: np.ndarray,
                     kind: str = "l1") -> float:
    """How much of the photo's content an output keeps: the content loss without its weight,
    mean |VGG(output) - VGG(photo)| over the conv4_4 features (``vgg``: a
    :class:`cglib.vgg.VGG19Features`); ``kind="l2"``: the mean squared difference instead.
    Lower = more content preserved; 0 for the photo itself. Both H x W x 3 uint8 RGB of one
    size."""
    _check_pair(photo, output, "content_distance")
    device = next(vgg.parameters()).device
    with torch.no_grad():
        _, value = ContentLoss(vgg, kind=kind, weight=1.0)(_to_tensor(photo, device),
                                                          _to_tensor(output, device))
    return value.item()


def vgg_features(vgg: nn.Module, images: list[np.ndarray]) -> torch.Tensor:
    """The features ``vgg`` computes for H x W x 3 uint8 RGB images of one size, as a batch:
    (N, C, h, w) float32 on ``vgg``'s device, without gradients (conv4_4 of a
    :class:`cglib.vgg.VGG19Features`: C = 512, h = H / 8, w = W / 8)."""
    device = next(vgg.parameters()).device
    with torch.no_grad():
        return vgg(torch.cat([_to_tensor(image, device) for image in images])).float()


def pooled_features(vgg: nn.Module, images: list[np.ndarray]) -> np.ndarray:
    """One vector per image for the set distances: :func:`vgg_features` averaged over the
    positions. H x W x 3 uint8 RGB in (sizes may differ); (N, C) float64 out."""
    rows = [vgg_features(vgg, [image]).mean(dim=(2, 3)) for image in images]
    return torch.cat(rows).cpu().double().numpy()


def _matrix_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (tiny negative eigenvalues
    from rounding are clipped to 0)."""
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two feature sets (N, D) and (M, D), as FID
    computes it (FID proper uses Inception features; here e.g. :func:`pooled_features`):
    |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2)). Lower = closer; 0 for
    identical sets. tr((S_a S_b)^(1/2)) is computed as the trace of the square root of the
    symmetric S_a^(1/2) S_b S_a^(1/2) (same eigenvalues), with ``eigh`` only. Needs at least
    two samples per set; with fewer samples than dimensions it is biased upwards."""
    for name, features in (("features_a", features_a), ("features_b", features_b)):
        if features.ndim != 2 or len(features) < 2:
            raise ValueError(f"{name} must be (N, D) with N >= 2; got shape {features.shape}")
    mean_a, mean_b = features_a.mean(axis=0), features_b.mean(axis=0)
    cov_a = np.atleast_2d(np.cov(features_a, rowvar=False))
    cov_b = np.atleast_2d(np.cov(features_b, rowvar=False))
    root_a = _matrix_sqrt(cov_a)
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sqrt(np.clip(cross, 0, None)).sum()
    distance = np.sum((mean_a - mean_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    return float(max(distance, 0.0))


def kernel_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
    """Squared maximum mean discrepancy (KID's estimator) between feature sets (N, D) and
    (M, D) with the polynomial kernel k(x, y) = (x.y / D + 1)^3; unbiased, so it can dip
    slightly below 0 when the sets come from one distribution. Lower = closer. Needs N, M >= 2.
    """
    n, m = len(features_a), len(features_b)
    if n < 2 or m < 2:
        raise ValueError(f"kernel_distance needs at least 2 samples per set; got {n} and {m}")
    dimension = features_a.shape[1]

    def kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        return (x @ y.T / dimension + 1) ** 3

    k_aa, k_bb = kernel(features_a, features_a), kernel(features_b, features_b)
    within_a = (k_aa.sum() - np.trace(k_aa)) / (n * (n - 1))
    within_b = (k_bb.sum() - np.trace(k_bb)) / (m * (m - 1))
    return float(within_a + within_b - 2 * kernel(features_a, features_b).mean())


def measure(outputs: list[np.ndarray], photos: list[np.ndarray] | None = None,
            reference: list[np.ndarray] | None = None, vgg: nn.Module | None = None
            ) -> dict[str, float]:
    """Average the measures over images (H x W x 3 uint8 RGB): ``edge_strength`` and
    ``colour_flatness`` always; with ``photos`` (the inputs, one per output) and ``vgg``,
    ``content_distance``; with ``reference`` (one image per output, e.g. a released
    generator's outputs), ``psnr`` and ``ssim``. Also ``photos``: how many images."""
    if not outputs:
        raise ValueError("measure got no images; pass a list of H x W x 3 uint8 RGB images")
    rows: dict[str, list[float]] = {
        "edge_strength": [edge_strength(o) for o in outputs],
        "colour_flatness": [colour_flatness(o) for o in outputs],
    }
    if vgg is not None and photos is not None:
        rows["content_distance"] = [content_distance(vgg, p, o)
                                    for p, o in zip(photos, outputs, strict=True)]
    if reference is not None:
        if len(reference) != len(outputs):
            raise ValueError(f"reference holds {len(reference)} images for {len(outputs)} "
                             "photos; give one reference output per photo")
        rows["psnr"] = [psnr(o, r) for o, r in zip(outputs, reference, strict=True)]
        rows["ssim"] = [ssim(o, r) for o, r in zip(outputs, reference, strict=True)]
    result = {name: float(np.mean(values)) for name, values in rows.items()}
    result["photos"] = float(len(outputs))
    return result


def epoch_measures(outputs: list[np.ndarray], photos: list[np.ndarray],
                   reference: list[np.ndarray] | None = None) -> dict[str, float]:
    """What a training run records about its generator at each epoch end, from its outputs of
    the held-out ``photos`` (H x W x 3 uint8 RGB): ``edge_strength``, ``colour_flatness``,
    ``ssim_to_photo`` (how much of the photo's structure is kept: a measure the training does
    not optimize), and with the outputs of a released generator as ``reference``,
    ``psnr_to_reference`` and ``ssim_to_reference``."""
    measured = measure(outputs, reference=reference)
    result = {"edge_strength": measured["edge_strength"],
              "colour_flatness": measured["colour_flatness"],
              "ssim_to_photo": float(np.mean([ssim(o, p) for o, p in zip(outputs, photos,
                                                                           strict=True)]))}
    if reference is not None:
        result |= {"psnr_to_reference": measured["psnr"], "ssim_to_reference": measured["ssim"]}
    return result


def evaluate(
    generator: nn.Module,
    photos: list[np.ndarray],
    reference: nn.Module | list[np.ndarray] | None = None,
    vgg: nn.Module | None = None,
) -> dict[str, float]:
    """Cartoonize each photo (H x W x 3 uint8 RGB) with ``generator`` (via
    :func:`cglib.inference.cartoonize`) and :func:`measure` the outputs against the photos
    and, when given, the ``reference`` (a generator to compare with, e.g. a released one, or
    its outputs as a list of images, one per photo)."""
    if not photos:
        raise ValueError("evaluate got no photos; pass a list of H x W x 3 uint8 RGB images")
    outputs = inference.cartoonize(generator, list(photos))
    if isinstance(reference, nn.Module):
        reference = inference.cartoonize(reference, list(photos))
    return measure(outputs, photos, reference, vgg)
