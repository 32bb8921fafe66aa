"""Figures and widgets for the notebooks. Nothing in cglib below the notebooks imports this.

Every function returns its matplotlib figure (or widget) so that a notebook can show it and
``make demo`` can save it.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np


def show_images(images: list[np.ndarray], titles: list[str] | None = None, columns: int = 0,
                size: float = 3.0) -> plt.Figure:
    """A row (or grid with ``columns``) of H x W x 3 uint8 RGB (or H x W gray) images."""
    count = len(images)
    columns = columns or count
    rows = -(-count // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(size * columns, size * rows),
                                squeeze=False)
    for index, axis in enumerate(axes.flat):
        axis.axis("off")
        if index < count:
            image = images[index]
            axis.imshow(image, cmap="gray" if image.ndim == 2 else None)
            if titles:
                axis.set_title(titles[index], fontsize=10)
    figure.tight_layout()
    return figure
