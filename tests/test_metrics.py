"""The measures on inputs whose answer is known: a flat image, the image itself, a blurred
copy, a shifted copy, hand-computed numbers."""

import math
import warnings

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from cglib import metrics
from cglib.vgg import VGG19Features


@pytest.fixture(scope="module")
def vgg() -> VGG19Features:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return VGG19Features(weights="random")


def cartoon_like(size: int = 64) -> np.ndarray:
    """Flat regions of four colours with hard borders: what a cartoon frame is made of."""
    image = np.empty((size, size, 3), np.uint8)
    image[:] = (230, 210, 160)
    image[size // 4:, : size // 2] = (40, 90, 170)
    image[size // 8: size // 2, size // 2:] = (200, 40, 40)
    cv2.circle(image, (3 * size // 4, 3 * size // 4), size // 6, (30, 140, 60), -1)
    return image


def blurred(image: np.ndarray, sigma: float = 2.0) -> np.ndarray:
    return cv2.GaussianBlur(image, (0, 0), sigma)


def noisy(image: np.ndarray, amount: int = 20) -> np.ndarray:
    noise = np.random.default_rng(0).integers(-amount, amount + 1, image.shape)
    return np.clip(image.astype(int) + noise, 0, 255).astype(np.uint8)


def test_psnr_by_hand():
    image = cartoon_like()
    assert metrics.psnr(image, image) == math.inf
    brighter = image.astype(int) + 10  # no pixel above 245: MSE is exactly 100
    assert math.isclose(metrics.psnr(image, brighter.astype(np.uint8)),
                        10 * math.log10(255**2 / 100), rel_tol=1e-12)  # 28.13 dB
    with pytest.raises(ValueError, match="one shape"):
        metrics.psnr(image, image[:32])


def test_ssim_is_one_for_the_image_itself_and_falls_with_blur():
    image = noisy(cartoon_like())
    assert metrics.ssim(image, image) == pytest.approx(1.0)
    slightly = metrics.ssim(image, blurred(image, 1))
    strongly = metrics.ssim(image, blurred(image, 3))
    assert 1.0 > slightly > strongly


def test_edge_strength_of_a_step_by_hand():
    step = np.zeros((32, 32, 3), np.uint8)
    step[:, 16:] = 200
    # Sobel x beside the step: 4 * 200 = 800, divided by 8: 100 gray levels per pixel
    assert metrics.edge_strength(step) == pytest.approx(100.0)


def test_edge_strength_flat_zero_and_blur_lowers_it():
    flat = np.full((32, 32, 3), 128, np.uint8)
    assert metrics.edge_strength(flat) == 0.0
    image = cartoon_like()
    sharp, soft = metrics.edge_strength(image), metrics.edge_strength(blurred(image))
    assert sharp > soft > 0


def test_colour_flatness():
    flat = np.full((16, 16, 3), 77, np.uint8)
    assert metrics.colour_flatness(flat) == 1.0  # the minimum
    halves = flat.copy()
    halves[8:] = 200
    assert metrics.colour_flatness(halves) == 2.0  # 50% each: both needed for 90%
    mostly = flat.copy()
    mostly[0, :10] = 200  # 10 of 256 pixels (4%): one colour covers 96%
    assert metrics.colour_flatness(mostly) == 1.0
    assert metrics.colour_flatness(mostly, coverage=1.0) == 2.0
    image = cartoon_like()
    assert metrics.colour_flatness(image) <= 4
    assert metrics.colour_flatness(noisy(image)) > 10 * metrics.colour_flatness(image)
    with pytest.raises(ValueError, match="coverage"):
        metrics.colour_flatness(image, coverage=90)


def test_content_distance(vgg):
    photo = noisy(blurred(cartoon_like(), 1.0), 10)
    assert metrics.content_distance(vgg, photo, photo) == 0.0
    shifted = [metrics.content_distance(vgg, photo, np.roll(photo, k, axis=1)) for k in (1, 4)]
    assert 0 < shifted[0] < shifted[1]
    assert metrics.content_distance(vgg, photo, blurred(photo, 2.0)) > 0
    brighter = np.clip(photo.astype(int) + 20, 0, 255).astype(np.uint8)

    def features(image):
        return vgg(torch.from_numpy(image).permute(2, 0, 1)[None].float() / 127.5 - 1)

    with torch.no_grad():
        difference = features(brighter) - features(photo)
    assert metrics.content_distance(vgg, photo, brighter) == pytest.approx(
        difference.abs().mean().item(), rel=1e-5)
    assert metrics.content_distance(vgg, photo, brighter, kind="l2") == pytest.approx(
        difference.pow(2).mean().item(), rel=1e-5)


def test_vgg_features_and_pooled_features(vgg):
    images = [cartoon_like(32), noisy(cartoon_like(32))]
    maps = metrics.vgg_features(vgg, images)
    assert maps.shape == (2, 512, 4, 4) and not maps.requires_grad
    pooled = metrics.pooled_features(vgg, images)
    assert pooled.shape == (2, 512) and pooled.dtype == np.float64
    assert np.allclose(pooled, maps.mean(dim=(2, 3)).double().numpy(), atol=1e-6)


def test_frechet_distance_by_hand():
    a = np.array([[0.0], [2.0]])  # mean 1, variance 2
    assert metrics.frechet_distance(a, a + 1) == pytest.approx(1.0)  # only the mean moved
    rng = np.random.default_rng(0)
    features = rng.normal(size=(200, 3)) @ np.diag([1.0, 2.0, 0.5]) + 1.0
    assert metrics.frechet_distance(features, features) == pytest.approx(0.0, abs=1e-8)
    shift = np.array([3.0, 4.0, 0.0])
    assert metrics.frechet_distance(features, features + shift) == pytest.approx(25.0)
    # doubling: mean 2 mu, covariance 4 S -> |mu|^2 + tr S + 4 tr S - 2 tr(2 S) = |mu|^2 + tr S
    mean, cov = features.mean(axis=0), np.cov(features, rowvar=False)
    assert metrics.frechet_distance(features, 2 * features) == pytest.approx(
        mean @ mean + np.trace(cov))
    with pytest.raises(ValueError, match="N >= 2"):
        metrics.frechet_distance(a[:1], a)


def test_kernel_distance_by_hand():
    x, y = np.array([[0.0], [1.0]]), np.array([[0.0], [2.0]])
    # k = (xy + 1)^3; within x: k(0,1) = 1; within y: k(0,2) = 1;
    # across: k(0,0) + k(0,2) + k(1,0) + k(1,2) = 1 + 1 + 1 + 27 = 30, 2 * 30 / 4 = 15
    assert metrics.kernel_distance(x, y) == pytest.approx(1 + 1 - 15)
    rng = np.random.default_rng(1)
    same = metrics.kernel_distance(rng.normal(size=(300, 4)), rng.normal(size=(300, 4)))
    apart = metrics.kernel_distance(rng.normal(size=(300, 4)), rng.normal(1, 1, size=(300, 4)))
    assert abs(same) < 0.05 < apart


class Identity(nn.Module):
    """A "generator" that returns its input: its cartoon of a photo is the photo."""

    def __init__(self) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.zeros(()))  # so that it has a device and a dtype

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return images + self.anchor


def test_evaluate_with_an_identity_generator(vgg):
    photos = [cartoon_like(32), noisy(cartoon_like(32))]
    result = metrics.evaluate(Identity(), photos, reference=photos, vgg=vgg)
    assert set(result) == {"edge_strength", "colour_flatness", "content_distance", "psnr",
                           "ssim", "photos"}
    assert result["photos"] == 2.0
    assert result["psnr"] > 45 and result["ssim"] > 0.99
    assert result["content_distance"] < 1e-2
    expected = np.mean([metrics.edge_strength(p) for p in photos])
    assert result["edge_strength"] == pytest.approx(expected, rel=0.05)
    assert metrics.evaluate(Identity(), photos, reference=Identity()) == {
        name: value for name, value in result.items() if name != "content_distance"}
    with pytest.raises(ValueError, match="one reference output per photo"):
        metrics.evaluate(Identity(), photos, reference=photos[:1])


def test_measure_without_photos_or_reference():
    images = [cartoon_like(32), blurred(cartoon_like(32))]
    result = metrics.measure(images)
    assert set(result) == {"edge_strength", "colour_flatness", "photos"}
    assert result["edge_strength"] == pytest.approx(
        (metrics.edge_strength(images[0]) + metrics.edge_strength(images[1])) / 2)
    with pytest.raises(ValueError, match="no images"):
        metrics.measure([])
