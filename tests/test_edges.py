"""cglib.edges: the vectorized edge smoothing gives the reference loop's bytes exactly."""

import cv2
import numpy as np
import pytest

from cglib.demodata import source_path
from cglib.edges import (
    blur_kernel,
    canny_edges,
    edge_mask,
    smooth_edges,
    smooth_edges_reference,
)
from cglib.images import fit_to_size, read_image


def blocky(seed, size=48):
    """Flat colour blocks with soft borders: plenty of Canny edges, and flat parts too."""
    small = np.random.default_rng(seed).integers(0, 256, (6, 6, 3), dtype=np.uint8)
    big = cv2.resize(small, (size, size), interpolation=cv2.INTER_NEAREST)
    return cv2.GaussianBlur(big, (3, 3), 0)


def noise(seed, height=48, width=40):
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def astronaut():
    return read_image(source_path("skimage", "data/astronaut.png"))


@pytest.mark.parametrize("seed", range(4))
def test_default_matches_the_reference_loop_byte_for_byte(seed):
    for image in (blocky(seed), noise(seed)):
        expected = smooth_edges_reference(image)
        assert (expected != image).any()  # the loop did change pixels
        result = smooth_edges(image)
        assert result.dtype == np.uint8 and result.shape == image.shape
        np.testing.assert_array_equal(result, expected)


def test_default_matches_the_loop_on_real_photo_crops(astronaut):
    crops = [astronaut[100:164, 150:214], fit_to_size(astronaut, 64), astronaut[::8, ::8]]
    for crop in crops:
        crop = np.ascontiguousarray(crop)
        mask = edge_mask(crop)
        assert 0.05 < mask.mean() < 0.95  # edges and flat parts
        np.testing.assert_array_equal(smooth_edges(crop), smooth_edges_reference(crop))


def test_opencv_uint8_blur_would_not_be_exact():
    """Why smooth_edges filters in float: OpenCV's uint8 Gaussian rounds in fixed point."""
    image = noise(0)
    mask = edge_mask(image)[:, :, None]
    rounded = np.where(mask, cv2.GaussianBlur(image, (5, 5), 0), image)
    assert (rounded != smooth_edges_reference(image)).any()


def test_outside_the_mask_nothing_changes_and_inside_is_the_gaussian():
    image = blocky(7)
    mask = edge_mask(image)
    result = smooth_edges(image)
    np.testing.assert_array_equal(result[~mask], image[~mask])
    padded = np.pad(image.astype(np.int64), ((2, 2), (2, 2), (0, 0)), mode="reflect")
    weights = np.outer([1, 4, 6, 4, 1], [1, 4, 6, 4, 1])
    for y, x in list(zip(*np.nonzero(mask), strict=True))[::37]:
        patch = padded[y:y + 5, x:x + 5]
        expected = (patch * weights[:, :, None]).sum(axis=(0, 1)) // 256
        np.testing.assert_array_equal(result[y, x], expected)


def test_gaussian_kernel_is_the_binomial_one():
    np.testing.assert_array_equal(blur_kernel("gaussian", 5), np.array([1, 4, 6, 4, 1]) / 16)
    np.testing.assert_allclose(blur_kernel("box", 3), [1 / 3] * 3)


@pytest.mark.parametrize("kernel_size", [3, 5])
def test_box_blur_is_the_floored_mean(kernel_size):
    image = noise(3, 30, 36)
    result = smooth_edges(image, low=50, high=150, dilation=3, blur="box",
                          kernel_size=kernel_size)
    mask = edge_mask(image, 50, 150, 3)
    half = kernel_size // 2
    padded = np.pad(image.astype(np.int64), ((half, half), (half, half), (0, 0)),
                    mode="reflect")
    expected = image.copy()
    for y, x in zip(*np.nonzero(mask), strict=True):
        expected[y, x] = padded[y:y + kernel_size, x:x + kernel_size].sum(axis=(0, 1)) \
            // kernel_size**2
    np.testing.assert_array_equal(result, expected)


def test_canny_uses_the_scripts_grayscale():
    image = noise(5)
    bgr = np.ascontiguousarray(image[:, :, ::-1])
    expected = cv2.Canny(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY), 100, 200)
    np.testing.assert_array_equal(canny_edges(image), expected)
    assert set(np.unique(expected)) <= {0, 255}


def test_mask_is_the_edges_dilated_by_a_square():
    image = np.zeros((40, 40, 3), np.uint8)
    image[:, 20:] = 255  # one vertical edge
    edges = canny_edges(image) > 0
    columns = np.flatnonzero(edges.any(axis=0))
    for dilation, grow in [(1, 0), (3, 1), (5, 2), (7, 3)]:
        mask = edge_mask(image, dilation=dilation)
        assert mask.dtype == bool and mask.shape == (40, 40)
        np.testing.assert_array_equal(
            np.flatnonzero(mask.any(axis=0)),
            np.arange(columns.min() - grow, columns.max() + grow + 1))
    thresholds_off = edge_mask(image, low=10_000, high=20_000)
    assert not thresholds_off.any()


def test_bad_arguments_say_what_is_wrong():
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        smooth_edges(np.zeros((8, 8), np.uint8))
    with pytest.raises(ValueError, match="H x W x 3 uint8"):
        smooth_edges(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="blur='median'"):
        smooth_edges(noise(0), blur="median")
    with pytest.raises(ValueError, match="odd"):
        smooth_edges(noise(0), kernel_size=4)
