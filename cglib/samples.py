"""The held-out photos a run follows: at every epoch end they go through the generator, as a
grid saved in the run folder and as measures (:func:`cglib.metrics.epoch_measures`): how far
the outputs stay from the photos, and how close they come to the released generator's
cartoons of the same photos when those are at hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from cglib import data, inference, metrics, pretrained
from cglib.config import TrainConfig


class Samples:
    """The held-out photos a run follows: drawn through the generator at every epoch end,
    as a grid and as measures (:func:`cglib.metrics.epoch_measures`, with the outputs of the
    released generator that made the data set's cartoons, when it is at hand). Only the
    process that writes files (``main``) draws them."""

    def __init__(self, root: Path, config: TrainConfig, main: bool) -> None:
        self.photos = data.load_images(root / "photos_test", config.samples,
                                          config.image_size) if main else []
        self.references = reference_cartoons(root, self.photos, config.reference_style) \
            if self.photos else None

    def outputs(self, generator: torch.nn.Module) -> list[np.ndarray]:
        """The photos through ``generator``, H x W x 3 uint8 RGB (fp32, whatever the training
        precision)."""
        return inference.cartoonize(generator, self.photos, precision="fp32") \
            if self.photos else []

    def record(self, generator: torch.nn.Module) -> tuple[np.ndarray | None, dict[str, float]]:
        """The grid (photos on top, outputs below) and the measures; (None, {}) without
        photos."""
        outputs = self.outputs(generator)
        if not outputs:
            return None, {}
        grid = np.concatenate([np.concatenate(self.photos, axis=1),
                               np.concatenate(outputs, axis=1)], axis=0)
        return grid, metrics.epoch_measures(outputs, self.photos, self.references)


def reference_cartoons(root: Path, photos: list[np.ndarray], style: str = ""
                       ) -> list[np.ndarray] | None:
    """The cartoons of ``photos`` (H x W x 3 uint8 RGB) by the released generator ``style``
    (downloaded when missing), or by default by the one that drew the cartoons of the data set
    at ``root`` (its manifest says ``official:<style>``) when its weights are at hand; None
    when there is none."""
    if style:
        return pretrained.render_cartoons(photos, style)
    source = data.read_manifest(root).get("recipe", {}).get("cartoon_source", "")
    style = source.split(":", 1)[1] if source.startswith("official:") else ""
    if not (style and pretrained.weights_available(style)):
        return None
    return pretrained.render_cartoons(photos, style)

