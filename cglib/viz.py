"""Figures and widgets for the notebooks. Only the notebooks and the upload app of notebook 07
(:mod:`cglib.app`, which shows its pictures with :func:`show_images`) import this.

Every function returns its matplotlib figure (or an HTML object, or a widget) so that a
notebook can show it and ``make demo`` can save it. The sections follow the notebooks, 01 to
07.
"""

from __future__ import annotations

import base64
import html
import os
import textwrap
from pathlib import Path

import cv2
import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np
import torch
from IPython.display import HTML, clear_output, display
from torch import nn

from cglib import ablations, architecture, data, edges, images, metrics, runs, train
from cglib.config import PHASES, TrainConfig, phases_run

# -- 01 data and edge smoothing ------------------------------------------------------------------

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


def show_domains(root: str | os.PathLike, per_domain: int = 6, size: float = 1.8) -> plt.Figure:
    """The first ``per_domain`` images of each domain of the data set at ``root`` (photos,
    photos_test, cartoons, cartoons_smoothed), one row per domain."""
    panels, titles = [], []
    for domain in data.DOMAINS:
        files = images.list_images(Path(root) / domain)[:per_domain]
        panels += [images.read_image(path) for path in files]
        panels += [np.full_like(panels[-1], 255)] * (per_domain - len(files))
        titles += [f"{domain}: {path.name}" if index == 0 else path.name
                   for index, path in enumerate(files)] + [""] * (per_domain - len(files))
    return show_images(panels, titles, columns=per_domain, size=size)


def _difference(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Where two H x W x 3 uint8 images differ: |first - second| summed over the channels,
    x4 so that small changes show, as an H x W uint8 image."""
    changed = np.abs(first.astype(np.int16) - second).sum(axis=2) * 4
    return np.clip(changed, 0, 255).astype(np.uint8)


def show_edge_steps(image: np.ndarray, low: int = 100, high: int = 200, dilation: int = 5,
                    blur: str = "gaussian", kernel_size: int = 5, size: float = 2.6) -> plt.Figure:
    """The three steps of edge promotion on an H x W x 3 uint8 RGB cartoon: the image, its
    Canny edges, the dilated mask, the edge-smoothed result (``cglib.edges.smooth_edges``) and
    the difference between result and image (x4, so that it shows)."""
    smoothed = edges.smooth_edges(image, low, high, dilation, blur, kernel_size)
    mask = edges.edge_mask(image, low, high, dilation)
    panels = [image, edges.canny_edges(image, low, high), mask.astype(np.uint8) * 255,
              smoothed, _difference(smoothed, image)]
    titles = ["cartoon c", f"1. Canny {low}/{high}", f"2. dilated {dilation}x{dilation}",
              f"3. {blur} {kernel_size}x{kernel_size} inside: e", "|e - c| x 4"]
    return show_images(panels, titles, size=size)


def edge_explorer(image: np.ndarray) -> widgets.VBox:
    """An ipywidgets explorer (ipywidgets 7 or 8) of :func:`show_edge_steps` on ``image``:
    sliders for the Canny thresholds and the dilation, menus for the blur and its size.
    Show it with ``display(...)``; it reacts in a live kernel.

    Each figure is put into the output area's state (``append_display_data``) rather than
    drawn while the area captures output: headless runs (papermill, nbval) stalled now and
    then on figures drawn inside such a capture.
    """
    style = {"description_width": "initial"}
    controls = {
        "low": widgets.IntSlider(value=100, min=0, max=500, step=10, description="Canny low",
                                 style=style),
        "high": widgets.IntSlider(value=200, min=0, max=500, step=10,
                                  description="Canny high", style=style),
        "dilation": widgets.IntSlider(value=5, min=1, max=15, step=2, description="dilation",
                                      style=style),
        "blur": widgets.Dropdown(options=["gaussian", "box"], value="gaussian",
                                 description="blur", style=style),
        "kernel_size": widgets.Dropdown(options=[3, 5, 7], value=5, description="kernel size",
                                        style=style),
    }
    output = widgets.Output()

    def draw(change: dict | None = None) -> None:
        values = {name: control.value for name, control in controls.items()}
        values["high"] = max(values["low"], values["high"])
        figure = show_edge_steps(image, **values)
        output.outputs = ()
        output.append_display_data(figure)
        plt.close(figure)

    for control in controls.values():
        control.observe(draw, names="value")
    draw()
    return widgets.VBox([widgets.HBox(list(controls.values())[:3]),
                         widgets.HBox(list(controls.values())[3:]), output])


# -- 02 architecture -----------------------------------------------------------------------------

def block_table(blocks: list[architecture.Block]) -> HTML:
    """The per-block listing of :func:`cglib.architecture.blocks` (name, output shape,
    parameters, GFLOP) with a total row, as an HTML table for the notebook to display."""

    def row(name: str, shape: str, parameters: int, flops: int) -> str:
        return (f"<tr><th style='text-align:left'>{name}</th><td>{shape}</td>"
                f"<td>{parameters:,}</td><td>{flops / 1e9:.2f}</td></tr>")

    body = "".join(row(block.name, " x ".join(map(str, block.output_shape[1:])),
                       block.parameters, block.flops) for block in blocks)
    total = row("total", "", sum(b.parameters for b in blocks), sum(b.flops for b in blocks))
    return HTML("<table><tr><th>block</th><th>output (C x H x W)</th><th>parameters</th>"
                f"<th>GFLOP</th></tr>{body}{total}</table>")


def draw_generator(model: nn.Module, input_size: tuple[int, int] = (256, 256),
                   size: float = 1.0) -> plt.Figure:
    """The generator's blocks drawn from the model itself (:func:`cglib.architecture.blocks`
    on one ``input_size`` = (H, W) image): one box per block, its height following the
    feature map's side and its width the channel count (square root, so that 3 and 256 both
    show), labelled with name and shape; the input first. The encoder narrows and deepens,
    the residual blocks keep a quarter of the resolution, the decoder widens back."""
    blocks = architecture.blocks(model, input_size)
    shapes = [("input", (1, 3, *input_size))] + [(b.name, b.output_shape) for b in blocks]
    figure, axis = plt.subplots(figsize=(size * 1.6 * len(shapes), size * 3.6))
    left = 0.0
    for name, shape in shapes:
        width, height = 0.12 * np.sqrt(shape[1]), 2.6 * shape[2] / input_size[0]
        axis.add_patch(plt.Rectangle((left, -height / 2), width, height, alpha=0.55,
                                     color="tab:orange" if "residual" in name else "tab:blue"))
        axis.text(left + width / 2, height / 2 + 0.1, name.replace("_", " "), ha="center",
                  va="bottom", fontsize=8)
        axis.text(left + width / 2, -height / 2 - 0.1, f"{shape[1]}x{shape[2]}x{shape[3]}",
                  ha="center", va="top", fontsize=7)
        left += width + 0.5
    axis.set_xlim(-0.3, left)
    axis.set_ylim(-2.0, 2.0)
    axis.axis("off")
    axis.set_title(f"generator on a {input_size[0]}x{input_size[1]} image: channels x height "
                   "x width after each block", fontsize=9)
    figure.tight_layout()
    return figure


def show_count_maps(maps: dict[str, np.ndarray], size: float = 3.2) -> plt.Figure:
    """Small 2-D integer maps side by side, each cell labelled with its value: e.g. how many
    kernel taps of a transposed convolution land on each output pixel."""
    figure, axes = plt.subplots(1, len(maps), figsize=(size * len(maps), size), squeeze=False)
    for axis, (title, values) in zip(axes[0], maps.items(), strict=True):
        values = np.asarray(values)
        axis.imshow(values, cmap="magma", vmin=0, vmax=values.max())
        for (row, column), value in np.ndenumerate(values):
            axis.text(column, row, f"{value:g}", ha="center", va="center", fontsize=7,
                      color="white" if value < values.max() * 0.6 else "black")
        axis.set_title(title, fontsize=9)
        axis.set_xticks([])
        axis.set_yticks([])
    figure.tight_layout()
    return figure


def output_grid(photos: list[np.ndarray], outputs: dict[str, list[np.ndarray]],
                size: float = 2.0) -> plt.Figure:
    """Photos in the first column, then one column per named set of outputs (a variant, a
    stage, a style), one row per photo: the layout of the paper's comparison figures."""
    names = ["photo", *outputs]
    figure, axes = plt.subplots(len(photos), len(names),
                                figsize=(size * len(names), size * len(photos)), squeeze=False)
    for row, photo in enumerate(photos):
        for column, name in enumerate(names):
            image = photo if name == "photo" else outputs[name][row]
            axes[row, column].imshow(image)
            axes[row, column].axis("off")
            if row == 0:
                axes[row, column].set_title(name, fontsize=9)
    figure.tight_layout()
    return figure


# -- 03 losses -----------------------------------------------------------------------------------

def show_feature_maps(features: list[torch.Tensor], titles: list[str], channels: int = 5,
                      size: float = 2.2, caption: str = "") -> plt.Figure:
    """VGG feature maps side by side: one row per image, the mean absolute activation first,
    then ``channels`` single channels (those that vary most in the first image, the same ones
    in every row, each on one colour scale across the rows).

    ``features``: one (C, h, w) or (1, C, h, w) tensor per image (e.g. conv4_4, C = 512);
    ``titles``: one per image; ``caption``: a line above the figure (in red), e.g. that the
    filters are random.
    """
    maps = [torch.as_tensor(f).detach().float().cpu().reshape(-1, *f.shape[-2:])
            for f in features]
    picked = maps[0].flatten(1).var(dim=1).argsort(descending=True)[:channels].tolist()
    columns = 1 + len(picked)
    figure, axes = plt.subplots(len(maps), columns, figsize=(size * columns, size * len(maps)),
                                squeeze=False)
    for row, (feature, title) in enumerate(zip(maps, titles, strict=True)):
        panels = [feature.abs().mean(dim=0)] + [feature[c] for c in picked]
        names = ["mean |activation|"] + [f"channel {c}" for c in picked]
        for column, (panel, name) in enumerate(zip(panels, names, strict=True)):
            if column == 0:
                low, high = 0.0, max(float(m.abs().mean(dim=0).max()) for m in maps)
            else:
                low = min(float(m[picked[column - 1]].min()) for m in maps)
                high = max(float(m[picked[column - 1]].max()) for m in maps)
            axis = axes[row, column]
            axis.imshow(panel.numpy(), cmap="magma", vmin=low, vmax=high)
            axis.set_xticks([])
            axis.set_yticks([])
            if row == 0:
                axis.set_title(name, fontsize=9)
        axes[row, 0].set_ylabel(title, fontsize=9)
    if caption:
        figure.suptitle(caption, fontsize=9, color="tab:red")
    figure.tight_layout()
    return figure


def show_patch_scores(images: list[np.ndarray], scores: list[torch.Tensor | np.ndarray],
                      titles: list[str], difference: bool = False, size: float = 2.8
                      ) -> plt.Figure:
    """What a patch discriminator says about each image: the H x W x 3 uint8 RGB images on top,
    below each its map of patch scores (an (h, w) or (1, h, w) tensor or array: D's raw
    output) on one shared colour scale, titled with the mean score.

    ``difference=True`` (two images, e.g. a cartoon and its edge-smoothed copy): a third
    column shows where the images differ (|first - second| summed over channels, on a scale
    that reaches white at its 99th percentile) and the first map minus the second, less its
    mean (given in the title), so that where the difference is larger or smaller than on
    average shows even when the first image scores higher everywhere (red: larger).
    """
    maps = [np.asarray(s.detach().float().cpu() if hasattr(s, "detach") else s,
                       dtype=np.float32).reshape(s.shape[-2:]) for s in scores]
    if difference and len(maps) != 2:
        raise ValueError(f"difference=True compares two images; got {len(maps)}")
    low, high = min(float(m.min()) for m in maps), max(float(m.max()) for m in maps)
    columns = len(images) + (1 if difference else 0)
    figure, axes = plt.subplots(2, columns, figsize=(size * columns, size * 2.2), squeeze=False,
                                layout="constrained")
    for column, (image, score, title) in enumerate(zip(images, maps, titles, strict=True)):
        axes[0, column].imshow(image)
        axes[0, column].set_title(title, fontsize=9)
        shown = axes[1, column].imshow(score, cmap="viridis", vmin=low, vmax=high)
        axes[1, column].set_title(f"D's scores, mean {score.mean():.3f}", fontsize=9)
    figure.colorbar(shown, ax=axes[1, :len(images)].tolist(), shrink=0.8, location="bottom",
                    label="score (higher = real)")  # below: no empty gap in the top row
    if difference:
        changed = np.abs(images[0].astype(np.int16) - images[1]).sum(axis=2)
        axes[0, -1].imshow(changed, cmap="gray", vmin=0,
                           vmax=max(1.0, float(np.percentile(changed, 99))))
        axes[0, -1].set_title("where they differ", fontsize=9)
        delta = maps[0] - maps[1]
        spread = delta - delta.mean()
        bound = float(np.abs(spread).max()) or 1.0
        shown = axes[1, -1].imshow(spread, cmap="coolwarm", vmin=-bound, vmax=bound)
        axes[1, -1].set_title(f"first minus second: mean {delta.mean():+.3f};\n"
                              "shown less that mean", fontsize=9)
        figure.colorbar(shown, ax=axes[1, -1], shrink=0.8)
    for axis in axes.flat:
        axis.axis("off")
    return figure


def show_table(rows: dict[str, dict[str, float | tuple[float, float]]], digits: int = 3
               ) -> HTML:
    """A table of measures, one row per name (``{row: {column: value}}``), as an HTML object
    for the notebook to display; a (mean, spread) pair shows as "mean ± spread". A column
    named for a measure of :mod:`cglib.metrics` says which way is better."""

    def cell(value: float | tuple[float, float]) -> str:
        if isinstance(value, tuple):
            return f"<td>{value[0]:.{digits}f} ± {value[1]:.{digits}f}</td>"
        return f"<td>{value:.{digits}f}</td>"

    columns = list(dict.fromkeys(column for row in rows.values() for column in row))
    better = metrics.HIGHER_IS_BETTER
    header = "".join(
        f"<th>{column}<br>({'higher' if better[column] else 'lower'} is better)</th>"
        if column in better else f"<th>{column}</th>" for column in columns)
    body = "".join(
        f"<tr><th style='text-align:left'>{name}</th>"
        + "".join(cell(row[c]) if c in row else "<td></td>" for c in columns) + "</tr>"
        for name, row in rows.items()
    )
    return HTML(f"<table><tr><th></th>{header}</tr>{body}</table>")


# -- 04 and 05 training --------------------------------------------------------------------------

def describe_schedule(config: TrainConfig) -> str:
    """The training schedule of ``config`` in words, written from its settings so that prose
    about a run never disagrees with it: "2 + 1 initialization and 4 + 2 adversarial epochs
    (constant + decaying learning rate) of 40 steps, 360 steps at 96x96, batch 4". A phase of
    no epochs is left out."""
    epochs = {phase.title: phase.epochs(config) for phase in phases_run(config)}
    phases = [f"{constant} + {decay} {name}" for name, (constant, decay) in epochs.items()]
    total = sum(constant + decay for constant, decay in epochs.values())
    size = f"at {config.image_size}x{config.image_size}, batch {config.batch_size}"
    if not config.steps_per_epoch:
        return (f"{' and '.join(phases)} epochs (constant + decaying learning rate), each one "
                f"pass over the photos, {size}")
    return (f"{' and '.join(phases)} epochs (constant + decaying learning rate) of "
            f"{config.steps_per_epoch} steps, {total * config.steps_per_epoch} steps {size}")


def plot_schedule(config: TrainConfig, steps_per_epoch: int) -> plt.Figure:
    """The learning rate of each phase of a run of ``config`` against the global step, one
    panel per phase: constant, then decaying linearly to 0 (:func:`cglib.config.learning_rate`)."""
    phases = phases_run(config)
    figure, axes = plt.subplots(1, len(phases), figsize=(4.5 * len(phases), 2.8), squeeze=False)
    start = 0
    for axis, phase in zip(axes[0], phases, strict=True):
        constant, decay = phase.epochs(config)
        steps = np.arange((constant + decay) * steps_per_epoch + 1)
        axis.plot(start + steps, [phase.learning_rate(config, step / steps_per_epoch)
                                  for step in steps])
        axis.set_title(f"{phase.name} phase: {constant} + {decay} epochs", fontsize=9)
        axis.set_xlabel("step")
        axis.set_ylabel("learning rate")
        axis.grid(alpha=0.3)
        start += len(steps) - 1
    figure.tight_layout()
    return figure


def plot_losses(records: list[dict], keys: tuple[str, ...] = ("content", "adversarial",
                                                              "discriminator")) -> plt.Figure:
    """Loss curves from a run's metric lines (:attr:`cglib.runs.RunRecord.metrics`), one panel per
    training phase, against the global step."""
    phases = [p for p in PHASES if any(r["phase"] == p.name for r in records)]
    figure, axes = plt.subplots(1, max(1, len(phases)), figsize=(6 * max(1, len(phases)), 3.5),
                                squeeze=False)
    for axis, phase in zip(axes.flat, phases, strict=False):
        rows = [r for r in records if r["phase"] == phase.name]
        for key in keys:
            if any(key in r for r in rows):
                axis.plot([r["step"] for r in rows if key in r],
                          [r[key] for r in rows if key in r], label=key)
        axis.set_title(f"{phase.title} phase")
        axis.set_xlabel("step")
        axis.legend()
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


class LiveTraining:
    """A callback for :meth:`cglib.train.Trainer.fit` that redraws, in the notebook, the loss
    curves and the sample grid of the epoch that just ended."""

    def __call__(self, trainer: train.Trainer) -> None:
        clear_output(wait=True)
        run = runs.read_run(trainer.folder.path)
        if run.metrics:
            figure = plot_losses(run.metrics)
            display(figure)
            plt.close(figure)
        if run.epochs and run.epochs[-1].samples:
            name = run.epochs[-1].samples
            grid = show_images([images.read_image(trainer.folder.path / name)],
                               [Path(name).stem], size=6)
            display(grid)
            plt.close(grid)
        progress = trainer.progress
        print(f"step {progress.step}, {progress.phase} phase, epoch {progress.epoch}")


def plot_measure(epochs: list[runs.EpochRecord], measure: str = "psnr_to_reference",
                 lines: dict[str, float] | None = None) -> plt.Figure:
    """One measure of a run's epochs (:attr:`cglib.runs.RunRecord.epochs`) against the epoch,
    counted over both phases (a marker per epoch, coloured by phase), with ``lines``: levels
    to read it against, by label (e.g. the untouched photos', the starting generator's)."""
    figure, axis = plt.subplots(figsize=(6.5, 3.2))
    rows = [e for e in epochs if measure in e.measures]
    for phase in dict.fromkeys(e.phase for e in rows):
        numbers = [(index, e.measures[measure]) for index, e in enumerate(rows, 1)
                   if e.phase == phase]
        axis.plot(*zip(*numbers, strict=True), "o-", label=f"{phase} phase")
    for (label, level), style in zip((lines or {}).items(), ("--", ":", "-."), strict=False):
        axis.axhline(level, color="gray", linestyle=style, label=f"{label} ({level:.3g})")
    axis.set_xlabel("epoch (both phases)")
    axis.set_ylabel(measure.replace("_", " "))
    axis.legend(fontsize=8)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


def report_link(page: str | os.PathLike, text: str) -> HTML:
    """A link that opens the run report ``page`` (:func:`cglib.report.render`) in a new browser
    tab, as an HTML object for ``display``."""
    uri = Path(page).resolve().as_uri()
    return HTML(f'<a href="{html.escape(uri)}" target="_blank">{html.escape(text)}</a>')


# -- 06 ablations --------------------------------------------------------------------------------

def claim_figures(results: dict[str, dict[str, dict[str, float]]],
                  verdicts: list[ablations.Verdict], size: float = 3.4) -> plt.Figure:
    """One panel per judged claim (:func:`cglib.ablations.judge`): each compared variant's
    seeds as dots, their mean with the standard deviation as an error bar, and the spread of
    the ``full`` variant's seeds as a shaded band (the noise floor of a comparison is the
    larger of its two variants' spreads, :func:`cglib.ablations.noise_floor`); the verdict in
    the title."""
    figure, axes = plt.subplots(1, max(1, len(verdicts)), figsize=(size * len(verdicts), size),
                                squeeze=False)
    colours = {"supported": "tab:green", "not resolved": "tab:gray",
               "contradicted": "tab:red"}
    for axis, verdict in zip(axes[0], verdicts, strict=False):
        claim = verdict.claim
        names = list(dict.fromkeys(name for pair in claim.pairs for name in pair))
        for x, name in enumerate(names):
            values = [run[claim.measure] for run in results[name].values()]
            axis.scatter([x] * len(values), values, s=14, color="black", alpha=0.6, zorder=3)
            axis.errorbar(x + 0.15, np.mean(values), yerr=np.std(values), fmt="o",
                          color="tab:blue", capsize=4)
        full = [run[claim.measure] for run in results["full"].values()]
        axis.axhspan(min(full), max(full), color="tab:blue", alpha=0.12)
        axis.set_xticks(range(len(names)), [n.replace("_", " ") for n in names], fontsize=8)
        axis.set_ylabel(f"{claim.measure} ({'higher' if claim.higher else 'lower'} is better)",
                        fontsize=8)
        axis.set_title("\n".join(textwrap.wrap(claim.text, 38)) + f"\n{verdict.verdict}",
                       fontsize=8, color=colours[verdict.verdict])
        axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure


# -- 07 cartoonize -------------------------------------------------------------------------------

def compare_slider(photo: np.ndarray, cartoon: np.ndarray, width: int = 480) -> HTML:
    """The photo and its cartoon (H x W x 3 uint8 RGB, one size) in one frame, with a slider
    that moves the border between them: an HTML object, self-contained (images inline), that
    also works in a notebook saved as HTML. Without scripts, half of each shows."""
    height = round(width * photo.shape[0] / photo.shape[1])
    return HTML(f"""
<div style="position:relative;width:{width}px;height:{height}px">
  <img src="{_png_uri(photo)}" style="position:absolute;width:{width}px;height:{height}px">
  <div style="position:absolute;overflow:hidden;width:50%;height:{height}px">
    <img src="{_png_uri(cartoon)}" style="width:{width}px;height:{height}px;max-width:none">
  </div>
</div>
<input type="range" min="0" max="100" value="50" style="width:{width}px"
  oninput="this.previousElementSibling.children[1].style.width = this.value + '%'">
<div style="width:{width}px;font-size:12px">cartoon (left) | photo (right): move the slider</div>
""")


def _png_uri(image: np.ndarray) -> str:
    """An H x W x 3 uint8 RGB image as a ``data:image/png`` URI."""
    encoded = cv2.imencode(".png", np.ascontiguousarray(image[:, :, ::-1]))[1].tobytes()
    return "data:image/png;base64," + base64.b64encode(encoded).decode()


def show_video(path: str | os.PathLike, width: int = 480) -> HTML:
    """A video file (H.264 in MP4 plays in every browser) as an inline HTML5 player: the
    bytes are embedded, so the notebook saved as HTML plays it too."""
    encoded = base64.b64encode(Path(path).read_bytes()).decode()
    return HTML(f'<video controls loop width="{width}" src="data:video/mp4;base64,{encoded}">'
                "</video>")


def plot_warping_errors(curves: dict[str, list[float]]) -> plt.Figure:
    """The warping error of each frame (:func:`cglib.flow.frame_warping_errors`, levels of
    255), one line per video in ``curves`` (name -> errors of frames 1 to N-1), with each
    video's mean in its label."""
    figure, axis = plt.subplots(figsize=(7, 3))
    for name, errors in curves.items():
        axis.plot(range(1, len(errors) + 1), errors, marker="o",
                  label=f"{name} (mean {np.mean(errors):.2f})")
    axis.set_xlabel("frame")
    axis.set_ylabel("warping error (levels)")
    axis.set_ylim(bottom=0)
    axis.legend()
    axis.grid(alpha=0.3)
    figure.tight_layout()
    return figure
