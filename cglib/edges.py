"""Edge-promoting data (paper, section 3.2): blur a cartoon's edges so D learns to reject them.

For each cartoon image: (1) detect edges with Canny, (2) dilate the edge regions, (3) smooth
the image inside the dilated regions. The result, the "edge-smoothed" cartoon e, is shown to the
discriminator as fake, which pushes the generator towards clear edges.

:func:`smooth_edges_reference` is the per-pixel loop of the script most reimplementations share
(taki0112's ``edge_smooth.py``), kept as the definition; :func:`smooth_edges` computes the same
bytes with whole-image filters, a few hundred times faster. NumPy and OpenCV only.
"""

from __future__ import annotations

import cv2
import numpy as np

BLURS = ("gaussian", "box")


def canny_edges(image: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """Canny edges of an H x W x 3 uint8 RGB image: H x W uint8, 255 on edges, 0 elsewhere.

    Grayscale as the script computes it (``cvtColor(BGR2GRAY)`` on its BGR array, which is
    ``RGB2GRAY`` on ours), hysteresis thresholds ``low`` and ``high``, 3x3 Sobel, L1 gradient.
    """
    return cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), low, high)


def edge_mask(image: np.ndarray, low: int = 100, high: int = 200,
              dilation: int = 5) -> np.ndarray:
    """Where :func:`smooth_edges` blurs: Canny edges dilated by a ``dilation`` x ``dilation``
    block of ones. H x W x 3 uint8 RGB in, H x W bool out."""
    kernel = np.ones((dilation, dilation), np.uint8)
    return cv2.dilate(canny_edges(image, low, high), kernel) != 0


def blur_kernel(blur: str = "gaussian", kernel_size: int = 5) -> np.ndarray:
    """The 1-D weights, applied along each axis: ``getGaussianKernel(kernel_size, 0)`` (for 5:
    the binomial [1, 4, 6, 4, 1] / 16) or a box of ``1 / kernel_size``. float64, sums to 1."""
    if blur not in BLURS:
        raise ValueError(f"blur={blur!r} is not one of {', '.join(BLURS)}")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"kernel_size={kernel_size} must be a positive odd number (3, 5, 7)")
    if blur == "gaussian":
        return cv2.getGaussianKernel(kernel_size, 0).ravel()
    return np.full(kernel_size, 1.0 / kernel_size)


def smooth_edges(image: np.ndarray, low: int = 100, high: int = 200, dilation: int = 5,
                 blur: str = "gaussian", kernel_size: int = 5) -> np.ndarray:
    """The edge-smoothed copy of an H x W x 3 uint8 RGB image (same shape and dtype).

    Inside :func:`edge_mask` each channel is replaced by its ``kernel_size`` x ``kernel_size``
    blur (reflect-101 border), truncated to uint8; elsewhere the pixels are kept. The defaults
    give exactly the bytes of :func:`smooth_edges_reference`.
    """
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(
            f"smooth_edges expects an H x W x 3 uint8 RGB image, got {image.dtype} "
            f"of shape {image.shape}"
        )
    mask = edge_mask(image, low, high, dilation)
    weights, divisor = blur_kernel(blur, kernel_size).astype(np.float32), 1
    if blur == "box":
        # Sum with integer weights and divide once: the exact mean, floored (1/5 is inexact).
        weights, divisor = np.ones(kernel_size, np.float32), kernel_size**2
    # The binomial weights (kernel_size 3, 5, 7) are multiples of 1/64 per axis, so every
    # product and partial sum fits float32's 24-bit mantissa exactly (at most 8 + 12 bits):
    # whatever the order of summation, the result equals the loop's float64 np.sum to the last
    # bit and truncates to the same byte. (OpenCV's own uint8 blur rounds in fixed point.)
    blurred = cv2.sepFilter2D(image, cv2.CV_32F, weights, weights,
                              borderType=cv2.BORDER_REFLECT_101)
    blurred = (blurred / divisor).astype(np.uint8)
    return cv2.copyTo(blurred, mask.view(np.uint8), image.copy())


def smooth_edges_reference(image: np.ndarray) -> np.ndarray:
    """The definition: the common edge-promoting script's per-pixel loop, line for line.

    H x W x 3 uint8 RGB in and out. It is taki0112's ``edge_smooth`` (the version most
    reimplementations copy) wrapped in RGB <-> BGR: grayscale by ``cvtColor(BGR2GRAY)``, Canny
    100/200, 5x5 dilation, NumPy ``reflect`` padding (= OpenCV's reflect-101), and for every
    masked pixel and channel the float64 ``np.sum`` of the 5x5 patch times the Gaussian,
    stored into a uint8 array (truncation). About a second per 256x256 image: for tests and
    the benchmark, not for data.
    """
    image = np.ascontiguousarray(image[:, :, ::-1])  # the script works on cv2.imread's BGR
    kernel_size = 5
    kernel = np.ones((kernel_size, kernel_size), np.uint8)
    gauss = cv2.getGaussianKernel(kernel_size, 0)
    gauss = gauss * gauss.transpose(1, 0)

    gray_img = cv2.cvtColor(image.copy(), cv2.COLOR_BGR2GRAY)
    pad_img = np.pad(image, ((2, 2), (2, 2), (0, 0)), mode="reflect")
    edges = cv2.Canny(gray_img, 100, 200)
    dilation = cv2.dilate(edges, kernel)

    gauss_img = np.copy(image)
    idx = np.where(dilation != 0)
    for i in range(np.sum(dilation != 0)):
        for channel in range(3):
            patch = pad_img[idx[0][i]:idx[0][i] + kernel_size,
                            idx[1][i]:idx[1][i] + kernel_size, channel]
            gauss_img[idx[0][i], idx[1][i], channel] = np.sum(np.multiply(patch, gauss))
    return np.ascontiguousarray(gauss_img[:, :, ::-1])
