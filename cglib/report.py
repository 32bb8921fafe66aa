"""A training run as one HTML page: how long to train, which checkpoint to use, did it work.

:func:`render` reads a run folder (what :class:`cglib.train.Trainer` writes: ``config.json``,
``metrics.jsonl``, ``epochs.jsonl``, ``samples/``, the exported generators) and writes one
self-contained page, ``report.html`` by default: every figure and sample grid is embedded as a
``data:`` URI and nothing refers to the network, so the page opens offline and can be mailed.

Its sections: the run (description, the settings that differ from the authors', the whole
config), progress, the checkpoint to pick (:func:`pick_checkpoint`, whose :data:`RULE` the page
states), loss and learning-rate curves, speed, the sample grid of every epoch behind a slider,
and the measures of every epoch. The folder is read with :func:`cglib.runs.read_run`; a run
that stopped half-way renders too. Every string from a file is escaped before it reaches the
page.
"""

from __future__ import annotations

import base64
import dataclasses
import html
import io
import math
import os
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from cglib import files, images, runs
from cglib.config import ADVERSARIAL, INIT, PHASES, RUNTIME_FIELDS, Phase, TrainConfig
from cglib.runs import EpochRecord, RunRecord

#: The rule the page states and :func:`pick_checkpoint` follows.
RULE = ("Among the adversarial-phase epochs that have an exported generator: (1) the one with "
        "the highest psnr_to_reference, when the measures hold it (the data set's cartoons came "
        "from a released generator, so the closest to it wins); else (2) the one with the "
        "highest edge_strength among those whose ssim_to_photo is at least 90% of the best "
        "init-phase ssim_to_photo (keeps the content, draws the clearest edges); else (3) the "
        "last exported generator.")

#: Share of the best init-phase ``ssim_to_photo`` that branch (2) of :data:`RULE` requires.
CONTENT_KEPT = 0.9

#: The measures :mod:`cglib.train` writes per epoch, in table order, and which way is better.
MEASURES = {
    "edge_strength": "mean gradient along Canny edges; higher = crisper edges",
    "colour_flatness": "colours covering 90% of the pixels; lower = flatter shading",
    "ssim_to_photo": "structural similarity to the input photo; higher = more content kept",
    "psnr_to_reference": "dB against the released generator's cartoons; higher = closer",
    "ssim_to_reference": "structural similarity to the released generator's cartoons; "
                         "higher = closer",
}

#: Sample grids larger than this many bytes are embedded as JPEG at most GRID_WIDTH wide, so
#: that a page with hundreds of epochs stays small enough for a browser.
GRID_BYTES = 150_000
GRID_WIDTH = 1024

#: The measures table is shown open up to this many rows, folded beyond.
OPEN_TABLE_ROWS = 40

#: Loss curves with more points than this are drawn faintly, under a moving average.
SMOOTH_ABOVE = 200

# Settings without an authors' value: where the data and the run live, and the free text.
_PLACES = ("data", "out", "description")
# Metric-line keys that are not losses.
_NOT_LOSSES = {"step", "phase", "epoch", "lr", "images_per_second", "seconds"}
_COLOURS = {INIT.name: "tab:blue", ADVERSARIAL.name: "tab:orange"}


# ----------------------------------------------------------------------------------------------
# The checkpoint to pick


@dataclass
class Pick:
    """The checkpoint :data:`RULE` picks: ``epoch`` (None when there is nothing to pick yet),
    the branch that decided (``"reference"``, ``"edges"``, ``"last"`` or ``"none"``) and why,
    in words."""

    epoch: EpochRecord | None
    branch: str
    reason: str


def _by_reference(candidates: list[EpochRecord]) -> Pick | None:
    """Branch (1): the highest psnr_to_reference among ``candidates``; None without one."""
    scored = [e for e in candidates if "psnr_to_reference" in e.measures]
    if not scored:
        return None
    best = max(scored, key=lambda e: e.measures["psnr_to_reference"])
    return Pick(best, "reference", f"(1) decided: the highest psnr_to_reference, "
                f"{best.measures['psnr_to_reference']:.2f} dB, among {len(scored)} exported "
                "generators")


def _by_edges(candidates: list[EpochRecord], epochs: list[EpochRecord]) -> Pick | str:
    """Branch (2), or why it does not apply."""
    init = [e.measures["ssim_to_photo"] for e in epochs
            if e.phase == INIT.name and "ssim_to_photo" in e.measures]
    if not init:
        return "no init-phase epoch has an ssim_to_photo to compare with"
    floor = CONTENT_KEPT * max(init)
    kept = [e for e in candidates if e.measures.get("ssim_to_photo", -math.inf) >= floor
            and "edge_strength" in e.measures]
    if not kept:
        return (f"no exported adversarial generator keeps ssim_to_photo at {floor:.3f} "
                f"({CONTENT_KEPT:.0%} of the best init-phase {max(init):.3f})")
    best = max(kept, key=lambda e: e.measures["edge_strength"])
    return Pick(best, "edges", f"(2) decided: the highest edge_strength, "
                f"{best.measures['edge_strength']:.3g}, among the {len(kept)} of "
                f"{len(candidates)} exported generators whose ssim_to_photo is at least "
                f"{floor:.3f} ({CONTENT_KEPT:.0%} of the best init-phase {max(init):.3f})")


def pick_checkpoint(epochs: list[EpochRecord]) -> Pick:
    """Follow :data:`RULE` over ``epochs`` (oldest first, as :func:`cglib.runs.read_run` gives
    them).
    On a tie the earlier epoch wins."""
    candidates = [e for e in epochs if e.phase == ADVERSARIAL.name and e.generator]
    if not candidates:
        return Pick(None, "none", "no adversarial-phase epoch has an exported generator yet; "
                    "the init phase only teaches the generator to reconstruct photos")
    picked = _by_reference(candidates)
    if picked is not None:
        return picked
    edges = _by_edges(candidates, epochs)
    if isinstance(edges, Pick):
        return edges
    return Pick(candidates[-1], "last", f"(3) decided: no psnr_to_reference in the measures, "
                f"and {edges}; so the last exported generator")


# ----------------------------------------------------------------------------------------------
# HTML pieces


def _text(value: Any) -> str:
    """``value`` for the page, escaped; floats to 4 significant digits, None as a dash."""
    if value is None:
        return "&mdash;"
    if isinstance(value, float):
        return html.escape(f"{value:.4g}")
    return html.escape(str(value))


def _table(header: list[str], rows: list[list[Any]], marked: int | None = None) -> str:
    """An HTML table; every cell is escaped; row ``marked`` is highlighted."""
    head = "".join(f"<th>{_text(name)}</th>" for name in header)
    body = "".join(
        ('<tr class="marked">' if index == marked else "<tr>")
        + "".join(f"<td>{_text(cell)}</td>" for cell in row) + "</tr>"
        for index, row in enumerate(rows))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _data_uri(mime: str, content: bytes) -> str:
    """``content`` as a ``data:`` URI of type ``mime``, base64."""
    return f"data:{mime};base64,{base64.b64encode(content).decode('ascii')}"


def _figure_uri(figure: Figure) -> str:
    """A matplotlib figure as a PNG data URI (Agg, no pyplot, no metadata)."""
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, metadata={"Software": None})
    return _data_uri("image/png", buffer.getvalue())


def _figure(figure: Figure, alt: str) -> str:
    """``figure`` as an embedded ``<img>`` with the text ``alt``."""
    return f'<img class="figure" alt="{html.escape(alt)}" src="{_figure_uri(figure)}">'


def _grid_uri(path: Path) -> str:
    """A sample grid as a data URI: the PNG itself, or, above GRID_BYTES, a JPEG at most
    GRID_WIDTH pixels wide."""
    content = path.read_bytes()
    if len(content) <= GRID_BYTES:
        return _data_uri("image/png", content)
    image = images.read_image(path)
    scale = min(1.0, GRID_WIDTH / image.shape[1])
    if scale < 1:
        image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    ok, encoded = cv2.imencode(".jpg", image[:, :, ::-1], [cv2.IMWRITE_JPEG_QUALITY, 85])
    if not ok:
        raise ValueError(f"{path}: OpenCV could not encode the sample grid as JPEG")
    return _data_uri("image/jpeg", encoded.tobytes())


def _duration(seconds: float) -> str:
    """E.g. ``"45 s"``, ``"12 min"``, ``"3.5 h"``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


# ----------------------------------------------------------------------------------------------
# Figures


def _plot_loss(axis: Any, steps: list[int], values: list[float], key: str) -> None:
    """One loss curve (discriminator parts dashed); a long one faint, under its moving
    average over a 50th of its points."""
    style = "--" if key.startswith("d_") else "-"
    if len(values) <= SMOOTH_ABOVE:
        axis.plot(steps, values, style, label=key)
        return
    window = len(values) // 50
    (faint,) = axis.plot(steps, values, style, alpha=0.2, linewidth=0.6)
    mean = np.convolve(values, np.ones(window) / window, mode="valid")
    axis.plot(steps[window - 1:], mean, style, color=faint.get_color(),
              label=f"{key} (mean of {window})")


def _losses_figure(metrics: list[dict]) -> Figure:
    """One panel of losses per phase against the step, and the learning rate against the
    step."""
    phases = [p.name for p in PHASES if any(r.get("phase") == p.name for r in metrics)]
    figure = Figure(figsize=(5 * (len(phases) + 1), 3.4), layout="constrained")
    axes = figure.subplots(1, len(phases) + 1, squeeze=False).flat
    for axis, phase in zip(axes, phases, strict=False):
        rows = [r for r in metrics if r.get("phase") == phase]
        keys = sorted({k for r in rows for k, v in r.items()
                       if k not in _NOT_LOSSES and isinstance(v, int | float)})
        for key in keys:
            _plot_loss(axis, [r["step"] for r in rows if key in r],
                       [r[key] for r in rows if key in r], key)
        axis.set(title=f"{phase} phase: losses", xlabel="step")
    lr_axis = axes[len(phases)]
    for phase in phases:
        points = [(r["step"], r["lr"]) for r in metrics if r.get("phase") == phase and "lr" in r]
        if points:
            lr_axis.plot(*zip(*points, strict=True), color=_COLOURS[phase], label=phase)
    lr_axis.set(title="learning rate (log scale)", xlabel="step", yscale="log")
    for axis in axes:
        axis.legend(fontsize=7)
        axis.grid(alpha=0.3)
    return figure


def _per_epoch_figure(epochs: list[EpochRecord], values: dict[str, str],
                      picked: EpochRecord | None = None) -> Figure:
    """One panel per attribute or measure in ``values`` (name -> title), against the epoch's
    position in the run, one line per phase; ``picked`` ringed."""
    order = {(e.phase, e.epoch): index + 1 for index, e in enumerate(epochs)}
    figure = Figure(figsize=(4 * len(values), 3.0), layout="constrained")
    for axis, (name, title) in zip(figure.subplots(1, len(values), squeeze=False).flat,
                                   values.items(), strict=True):
        for phase in (p.name for p in PHASES):
            points = [(order[e.phase, e.epoch], _value(e, name)) for e in epochs
                      if e.phase == phase and _value(e, name) is not None]
            if points:
                axis.plot(*zip(*points, strict=True), marker="o", markersize=3, label=phase,
                          color=_COLOURS[phase])
        if picked is not None and _value(picked, name) is not None:
            axis.plot(order[picked.phase, picked.epoch], _value(picked, name), marker="o",
                      markersize=11, fillstyle="none", color="black", label="picked")
        axis.set(title=title, xlabel="epoch (init phase first)")
        axis.xaxis.set_major_locator(MaxNLocator(integer=True))
        axis.legend(fontsize=7)
        axis.grid(alpha=0.3)
    return figure


def _value(epoch: EpochRecord, name: str) -> float | None:
    """``epoch.seconds``, ``epoch.images_per_second`` or the measure ``name`` of ``epoch``."""
    if name in ("seconds", "images_per_second"):
        return getattr(epoch, name)
    return epoch.measures.get(name)


# ----------------------------------------------------------------------------------------------
# Sections, top to bottom


def _differences(config: dict) -> tuple[list[list[Any]], list[list[Any]]]:
    """Rows (setting, this run, the authors') of the recipe settings that differ from
    :class:`cglib.config.TrainConfig`'s defaults, and of the runtime settings that do."""
    defaults = dataclasses.asdict(TrainConfig())
    recipe, runtime = [], []
    for name, value in config.items():
        if name in _PLACES or defaults.get(name, object()) == value:
            continue
        row = [name, value, defaults.get(name, "(not a setting of this cglib)")]
        (runtime if name in RUNTIME_FIELDS else recipe).append(row)
    return recipe, runtime


def _header_section(run: RunRecord) -> str:
    """The run's name, description and data set, the settings that differ, the notes."""
    config = run.config
    recipe, runtime = _differences(config)
    parts = [f"<h1>Training run {_text(run.path.resolve().name)}</h1>",
             f"<p class=\"description\">{_text(config.get('description') or 'no description')}"
             "</p>",
             f"<p>Run folder <code>{_text(run.path)}</code>"
             + (f"; data set <code>{_text(config['data'])}</code>" if config.get("data") else "")
             + ".</p>"]
    if recipe:
        parts += ["<h3>What this run changes from the authors' settings</h3>",
                  _table(["setting", "this run", "authors"], recipe)]
    elif config:
        parts.append("<p>Every setting that shapes what is learned is the authors'.</p>")
    if runtime:
        parts += ["<p>Settings of where and how fast (they do not change what is learned):</p>",
                  _table(["setting", "this run", "default"], runtime)]
    rows = [[name, value] for name, value in config.items()]
    parts.append(f"<details><summary>The whole config ({len(rows)} settings)</summary>"
                 f"{_table(['setting', 'value'], rows)}</details>")
    parts += [f"<p class=\"note\">{_text(note)}</p>" for note in run.notes]
    return "<header>" + "".join(parts) + "</header>"


def _planned_epochs(config: dict, phase: Phase) -> int | None:
    """The epochs ``config`` (a saved config) plans for ``phase`` (constant plus decay); None
    when unknown."""
    names = phase.epoch_fields
    if not all(isinstance(config.get(name), int) for name in names):
        return None
    return config[names[0]] + config[names[1]]


def _finished_epochs(run: RunRecord, phase: str) -> int:
    """The number of the last finished epoch of ``phase``; 0 before the first."""
    return max([e.epoch for e in run.epochs if e.phase == phase] + [0])


def _remaining_time(run: RunRecord, phase: str, planned: int | None) -> str:
    """E.g. ``"; 3 min per epoch so far, about 2.1 h for the rest"``, or ``""``."""
    done = _finished_epochs(run, phase)
    times = [e.seconds for e in run.epochs if e.phase == phase and e.seconds is not None]
    if planned is None or not times or done >= planned:
        return ""
    mean = sum(times) / len(times)
    return (f"; {_duration(mean)} per epoch so far, about {_duration(mean * (planned - done))} "
            "for the rest")


def _state(run: RunRecord) -> str:
    """``"finished"``, ``"not started"`` or where the run stopped (or is running)."""
    planned = [_planned_epochs(run.config, phase) for phase in PHASES]
    if None not in planned and all(_finished_epochs(run, phase.name) >= count
                                   for phase, count in zip(PHASES, planned, strict=True)):
        return "finished"
    if not run.metrics:
        return "not started"
    return f"stopped, or still running, in the {_text(run.metrics[-1].get('phase'))} phase"


def _progress_section(run: RunRecord) -> str:
    """Steps and time so far, and the finished epochs of each phase against the plan."""
    steps = max([r["step"] for r in run.metrics] + [e.step or 0 for e in run.epochs] + [0])
    clock = [r["seconds"] for r in run.metrics if isinstance(r.get("seconds"), int | float)]
    spent = clock[-1] if clock else sum(e.seconds or 0.0 for e in run.epochs)
    items = []
    for phase in PHASES:
        planned = _planned_epochs(run.config, phase)
        of = "" if planned is None else f" of {planned}"
        items.append(f"<li>{phase.name} phase: {_finished_epochs(run, phase.name)}{of} epochs "
                     f"finished{_text(_remaining_time(run, phase.name, planned))}</li>")
    return (f"<section><h2>Progress</h2><p>Training {_state(run)}: {steps} steps done, "
            f"{_duration(spent)} of training recorded.</p><ul>{''.join(items)}</ul></section>")


def _pick_section(run: RunRecord, pick: Pick, run_dir: str | os.PathLike) -> str:
    """The rule, the generator it picks and the command that uses it."""
    parts = ["<section id=\"pick\"><h2>The checkpoint I would pick</h2>",
             f"<p class=\"rule\"><strong>Rule.</strong> {_text(RULE)}</p>"]
    if pick.epoch is None:
        parts.append(f"<p>Nothing to pick yet: {_text(pick.reason)}.</p>")
    else:
        path = pick.epoch.generator
        missing = "" if (run.path / path).is_file() else " (the file is missing)"
        command = (f"python -m cglib cartoonize photo.jpg --style "
                   f"{shlex.quote(str(Path(run_dir) / path))} --out cartoons/")
        parts += [f"<p><strong>{_text(pick.epoch.name)}</strong>: generator "
                  f"<code>{_text(path)}</code>{missing}.</p>",
                  f"<p>{_text(pick.reason)}.</p>",
                  f"<p>To use it:</p><pre>{_text(command)}</pre>"]
    parts.append("<p>For scale: the authors trained 10 + 10 initialization epochs and 100 + 100 "
                 "adversarial epochs; their pictures came from adversarial epochs 100 to "
                 "130.</p></section>")
    return "".join(parts)


def _curves_section(run: RunRecord) -> str:
    """The losses of each phase and the learning rate, against the step."""
    if not run.metrics:
        return "<section><h2>Losses</h2><p>No metric lines yet.</p></section>"
    return ("<section><h2>Losses and learning rate</h2>"
            + _figure(_losses_figure(run.metrics), "losses per phase and learning rate")
            + "</section>")


def _speed_section(run: RunRecord) -> str:
    """Images per second and seconds of each finished epoch."""
    timed = [e for e in run.epochs if e.seconds is not None or e.images_per_second is not None]
    if not timed:
        return "<section><h2>Speed</h2><p>No finished epoch yet.</p></section>"
    values = {"images_per_second": "images per second", "seconds": "seconds per epoch"}
    return ("<section><h2>Speed</h2><p>Per finished epoch, from epochs.jsonl.</p>"
            + _figure(_per_epoch_figure(timed, values), "images per second and time per epoch")
            + "</section>")


def _samples_section(run: RunRecord) -> str:
    """The sample grid of every epoch, the last one shown, the others behind a slider."""
    shown = [e for e in run.epochs if e.samples and (run.path / e.samples).is_file()]
    if not shown:
        return "<section><h2>Samples</h2><p>No sample grid yet.</p></section>"
    last = len(shown) - 1
    frames = "".join(
        f"<figure{'' if index == last else ' hidden'}><figcaption>{_text(e.name)}</figcaption>"
        f"<img class=\"grid\" alt=\"samples after {_text(e.name)}\" "
        f"src=\"{_grid_uri(run.path / e.samples)}\"></figure>"
        for index, e in enumerate(shown))
    return ("<section><h2>Samples</h2><p>Held-out photos (top row) and the generator's "
            "outputs (bottom row) at the end of each epoch; move the slider to go through "
            "the epochs.</p>"
            f"<input id=\"epoch-slider\" type=\"range\" min=\"0\" max=\"{last}\" "
            f"value=\"{last}\" aria-label=\"epoch\" hidden>"
            f"<div id=\"epoch-grids\">{frames}</div></section>")


def _measure_names(epochs: list[EpochRecord]) -> list[str]:
    """The measures ``epochs`` hold: :data:`MEASURES` in their order, then any others."""
    found = {name for e in epochs for name in e.measures}
    return [n for n in MEASURES if n in found] + sorted(found - set(MEASURES))


def _measures_section(run: RunRecord, pick: Pick) -> str:
    """The measures of every epoch as a table (the pick highlighted) and as figures."""
    names = _measure_names(run.epochs)
    if not names:
        return ("<section><h2>Measures</h2><p>No measures: the run folder has no epochs.jsonl "
                "with measures.</p></section>")
    measured = [e for e in run.epochs if e.measures]
    rows = [[e.phase, e.epoch, e.step, *(e.measures.get(n) for n in names), e.generator]
            for e in measured]
    marked = next((i for i, e in enumerate(measured) if e is pick.epoch), None)
    legend = "".join(f"<li><code>{_text(n)}</code>: {_text(MEASURES.get(n, ''))}</li>"
                     for n in names)
    table = _table(["phase", "epoch", "step", *names, "generator"], rows, marked)
    opened = " open" if len(rows) <= OPEN_TABLE_ROWS else ""
    return ("<section><h2>Measures</h2><p>On the held-out photos at the end of each epoch; "
            "the picked generator's row is highlighted.</p>"
            f"<details{opened}><summary>The table ({len(rows)} epochs)</summary>{table}</details>"
            f"<ul>{legend}</ul>"
            + _figure(_per_epoch_figure(measured, {n: n for n in names}, pick.epoch),
                      "measures per epoch")
            + "</section>")


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 72rem; margin: 1rem auto;
       padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: left; }
tr.marked { background: #ffe9a8; font-weight: bold; }
img.figure, img.grid { max-width: 100%; }
img.grid { image-rendering: pixelated; min-width: 24rem; }
input[type=range] { width: 100%; }
.note { color: #8a5a00; }
pre { background: #f4f4f4; padding: 0.5rem; overflow-x: auto; }
"""

_SCRIPT = """
const slider = document.getElementById("epoch-slider");
if (slider) {
  const frames = document.querySelectorAll("#epoch-grids figure");
  slider.hidden = false;
  slider.addEventListener("input", () => frames.forEach((frame, index) => {
    frame.hidden = index !== Number(slider.value);
  }));
}
"""


def render(run_dir: str | os.PathLike, out: str | os.PathLike | None = None) -> Path:
    """Write the HTML page of the run in ``run_dir`` to ``out`` (default
    ``run_dir/report.html``), atomically, and return its path. Raises FileNotFoundError when
    ``run_dir`` holds no run (neither ``config.json`` nor ``metrics.jsonl``)."""
    run = runs.read_run(run_dir)
    pick = pick_checkpoint(run.epochs)
    body = "".join([_header_section(run), _progress_section(run),
                    _pick_section(run, pick, run_dir), _curves_section(run),
                    _speed_section(run), _samples_section(run), _measures_section(run, pick)])
    page = ("<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>Training run {_text(run.path.resolve().name)}</title>"
            f"<style>{_STYLE}</style></head><body>{body}<script>{_SCRIPT}</script>"
            "</body></html>\n")
    path = Path(out) if out is not None else Path(run_dir) / "report.html"
    with files.atomic_write(path, "w", durable=False) as file:
        file.write(page)
    return path
