"""Fixtures shared by several test files."""

import cv2
import numpy as np
import pytest


def write_dataset(root, size=32, counts=None, seed=0):
    """A tiny data set of smooth random colour images in the cglib layout; returns ``root``."""
    counts = counts or {"photos": 6, "photos_test": 2, "cartoons": 6, "cartoons_smoothed": 6}
    rng = np.random.default_rng(seed)
    for domain, count in counts.items():
        folder = root / domain
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
            image = cv2.resize(small, (size, size), interpolation=cv2.INTER_CUBIC)
            cv2.imwrite(str(folder / f"{index:03d}.png"), image)
    return root


@pytest.fixture
def tiny_dataset(tmp_path):
    """A data set root with 6 photos, 2 test photos, 6 cartoons and 6 smoothed, 32x32."""
    return write_dataset(tmp_path / "data")
