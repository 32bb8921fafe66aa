"""The upload app of notebook 07: upload a photo, pick a style, keep the photo's colours or
not, set the strength, see the cartoon beside the photo, and save it.

The work is one function of the uploaded bytes, :func:`cartoonize_upload`, that tests and the
notebook call without a browser; :func:`cartoonize_app` only wires ipywidgets (7 or 8) to it.
Like :mod:`cglib.viz`, it serves the notebooks: nothing else in cglib imports it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
from torch import nn

from cglib import files, images, inference, viz


def uploaded_files(value: Sequence[Mapping[str, Any]] | Mapping[str, Mapping[str, Any]]
                   ) -> list[tuple[str, bytes]]:
    """(file name, bytes) of each file in an ipywidgets ``FileUpload.value``: a tuple of
    dicts with ``name`` and ``content`` in ipywidgets 8, a dict of name -> {``content``} in
    ipywidgets 7."""
    if isinstance(value, Mapping):  # ipywidgets 7
        return [(name, bytes(item["content"])) for name, item in value.items()]
    return [(item["name"], bytes(item["content"])) for item in value]


def cartoonize_upload(name: str, content: bytes, generator: nn.Module, keep_colors: bool = False,
                      strength: float = 1.0, max_side: int | None = 1024
                      ) -> tuple[np.ndarray, np.ndarray]:
    """What the app does with one uploaded file: decode it as robustly as any image file
    (:func:`cglib.images.decode_image`), cartoonize it (:func:`cglib.inference.cartoonize`,
    downsized to ``max_side``), and return (photo, cartoon), H x W x 3 uint8 RGB. Raises
    :class:`cglib.images.ImageError` naming the file when it is not a usable image."""
    photo = inference.shrink(images.decode_image(content, name), max_side)
    try:
        cartoon = inference.cartoonize(generator, photo, keep_colors=keep_colors,
                                       strength=strength)
    except images.ImageError as error:  # too small: named by the upload's file name
        raise images.ImageError(name, error.reason) from None
    return photo, cartoon


def cartoonize_app(generators: dict[str, nn.Module], out: str | os.PathLike) -> widgets.VBox:
    """A small app (ipywidgets 7 or 8): upload a photo, pick a style and the colour options,
    see the cartoon beside the photo, and save it into ``out`` (as ``<name>_<style>.png``,
    or ``<name>_<style>-2.png`` and so on: a save never replaces a file). ``generators``:
    style name -> generator. The work is done by :func:`cartoonize_upload`; the app only
    wires widgets to it."""
    upload = widgets.FileUpload(accept="image/*", multiple=False, description="photo")
    style = widgets.Dropdown(options=list(generators), description="style")
    keep = widgets.Checkbox(value=False, description="keep the photo's colours")
    strength = widgets.FloatSlider(value=1.0, min=0.0, max=1.0, step=0.05,
                                   description="strength")
    save = widgets.Button(description="save", disabled=True)
    output, result = widgets.Output(), {}

    def draw(change: dict | None = None) -> None:
        files_in = uploaded_files(upload.value)
        if not files_in:
            return
        name, content = files_in[0]
        try:
            photo, cartoon = cartoonize_upload(name, content, generators[style.value],
                                               keep.value, strength.value)
        except images.ImageError as error:
            output.outputs, save.disabled = (), True
            output.append_stdout(f"{error}\n")
            return
        result.update(name=Path(name).stem, cartoon=cartoon)
        figure = viz.show_images([photo, cartoon], ["photo", f"{style.value}"], size=4)
        output.outputs, save.disabled = (), False
        output.append_display_data(figure)
        plt.close(figure)

    def store(button: widgets.Button) -> None:
        label = "-".join(style.value.split())
        path = files.unused_path(Path(out) / f"{result['name']}_{label}.png")
        images.write_image(path, result["cartoon"])
        output.append_stdout(f"saved {path}\n")

    for control in (upload, style, keep, strength):
        control.observe(draw, names="value")
    save.on_click(store)
    return widgets.VBox([widgets.HBox([upload, style, save]), widgets.HBox([keep, strength]),
                         output])
