"""The paper's ablations as named changes of one training recipe, run and measured alike.

Each variant is a dict of :class:`cglib.train.TrainConfig` changes, not a copy of the training
code. :func:`run_variants` trains every variant with the same data, seeds and step budget into
``<out>/<variant>/`` and measures it on held-out photos with :func:`cglib.metrics.evaluate`.
Finished runs are found again (their checkpoint says ``done`` and their recipe matches), so a
rerun of the notebook retrains nothing; an interrupted one resumes.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from cglib import batches, checkpoints, metrics, pretrained, train

#: name -> (what it tests, config changes). "full" is CartoonGAN as the authors trained it.
VARIANTS: dict[str, tuple[str, dict[str, Any]]] = {
    "full": ("CartoonGAN: init phase, edge loss, L1 content, w = 10, least squares, "
             "instance norm", {}),
    "no_init": ("without the initialization phase (its steps go to the adversarial phase)",
                {"init_epochs": 0, "init_decay_epochs": 0}),
    "no_edge_loss": ("without the edge-smoothed cartoons as fakes", {"edge_loss": False}),
    "l2_content": ("L2 instead of L1 content loss", {"content_loss": "l2"}),
    "content_weight_1": ("content weight w = 1", {"content_weight": 1.0}),
    "content_weight_100": ("content weight w = 100", {"content_weight": 100.0}),
    "log_loss": ("the paper's log loss instead of least squares", {"adversarial_loss": "log"}),
    "batch_norm": ("batch instead of instance normalization (the paper's text)",
                   {"norm": "batch"}),
}
#: w = 10 is the full recipe itself: its row is the "full" run.
ALIASES = {"content_weight_10": "full"}

#: Per-profile step budget of each variant, on top of the training preset. Every variant gets
#: the same budget. demo: 60 steps per variant (20 initialization, 40 adversarial) at the demo
#: preset's size, under a minute each on a 2-core CPU; paper: the full schedule (days on one
#: GPU for all variants).
BUDGETS: dict[str, dict[str, Any]] = {
    "smoke": {},
    "demo": {"init_epochs": 1, "init_decay_epochs": 0, "epochs": 1, "decay_epochs": 1,
             "steps_per_epoch": 20},
    "paper": {},
}


def base_config(profile: str, parameters: dict[str, Any], ignore: tuple[str, ...] = (),
                **fixed: Any) -> train.TrainConfig:
    """The recipe every variant starts from: the profile's training preset, then its ablation
    :data:`BUDGETS`, then a notebook's upper-case parameters (see
    :func:`cglib.train.config_from_parameters`), then ``fixed``."""
    budget = {name.upper(): value for name, value in BUDGETS[profile].items()}
    given = {name: value for name, value in parameters.items() if value is not None}
    return train.config_from_parameters(profile, {**budget, **given}, ignore, **fixed)


def variant_config(base: train.TrainConfig, name: str, out: str | Path) -> train.TrainConfig:
    """``base`` with variant ``name``'s changes, writing to ``out/name``. Removing the
    initialization phase moves its epochs to the adversarial phase, so every variant takes the
    same number of steps."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; the variants are: {', '.join(VARIANTS)}")
    changes = dict(VARIANTS[name][1])
    if changes.get("init_epochs") == 0:
        changes["epochs"] = base.epochs + base.init_epochs
        changes["decay_epochs"] = base.decay_epochs + base.init_decay_epochs
    return dataclasses.replace(base, out=str(Path(out) / name), **changes)


def _finished(config: train.TrainConfig) -> bool:
    """True when ``config.out`` holds a finished run of exactly this recipe."""
    loaded = checkpoints.load_latest(Path(config.out) / "checkpoints")
    if loaded is None or loaded[0]["progress"]["phase"] != "done":
        return False
    saved = loaded[0]["config"]
    return all(saved[k] == v for k, v in dataclasses.asdict(config).items()
               if k not in train.RUNTIME_FIELDS)


def run_variants(base: train.TrainConfig, out: str | Path, names: list[str] | None = None,
                 photos: list[np.ndarray] | None = None, reference: nn.Module | None = None,
                 vgg: nn.Module | None = None, progress_bar: bool = True
                 ) -> dict[str, dict[str, float]]:
    """Train (or find) each variant and measure it; returns ``{variant: measures}``.

    ``photos``: held-out H x W x 3 uint8 RGB photos to measure on (default: the data set's
    ``photos_test``, ``base.samples`` of them). ``reference``: a released generator whose
    outputs the variants are compared with (PSNR, SSIM); ``vgg``: the network for the content
    distance. Measures and wall times are also written to ``out/results.json``.
    """
    out = Path(out)
    names = names or list(VARIANTS)
    if photos is None:
        photos = batches.load_images(Path(base.data) / "photos_test", max(base.samples, 1),
                                  base.image_size)
    results: dict[str, dict[str, float]] = {}
    for name in names:
        config = variant_config(base, name, out)
        if _finished(config):
            print(f"{name}: finished earlier, reusing {config.out}")
            seconds = _saved_seconds(out, name)
        else:
            print(f"{name}: {VARIANTS[name][0]}")
            trainer = train.Trainer(config, resume=True)
            seconds = _saved_seconds(out, name) + trainer.fit(progress_bar=progress_bar)[
                "seconds"]
        generator = pretrained.load_generator(Path(config.out) / "generator.pt")
        results[name] = {**metrics.evaluate(generator, photos, reference, vgg),
                         "train_seconds": seconds}
        _save(out, results)
    return results


def _saved_seconds(out: Path, name: str) -> float:
    path = out / "results.json"
    if not path.is_file():
        return 0.0
    return float(json.loads(path.read_text()).get(name, {}).get("train_seconds", 0.0))


def _save(out: Path, results: dict) -> None:
    path = out / "results.json"
    saved = json.loads(path.read_text()) if path.is_file() else {}
    saved.update(results)
    out.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(saved, indent=1))


def check_claims(results: dict[str, dict[str, float]]) -> dict[str, tuple[bool, str]]:
    """The paper's claims about its loss components, each checked on two or three rows of
    :func:`run_variants`' table: ``{claim: (supported, the numbers compared)}``. A claim whose
    variants did not run is left out. With a released generator as reference (``psnr`` in the
    rows), "better" means closer to it; otherwise the reference-free measures decide."""
    verdicts: dict[str, tuple[bool, str]] = {}

    def compare(claim: str, measure: str, better: str, worse: str, higher: bool) -> None:
        if better in results and worse in results and measure in results[better]:
            a, b = results[better][measure], results[worse][measure]
            supported = a > b if higher else a < b
            verdicts[claim] = (supported, f"{measure}: {better} {a:.4g} vs {worse} {b:.4g} "
                                          f"({'higher' if higher else 'lower'} is better)")

    closeness = "psnr" if any("psnr" in row for row in results.values()) else None
    compare("the edge-promoting loss gives clearer edges", "edge_strength", "full",
            "no_edge_loss", higher=True)
    if closeness:
        compare("the initialization phase gives a better result in the same steps", closeness,
                "full", "no_init", higher=True)
        compare("L1 content loss reaches the style better than L2", closeness, "full",
                "l2_content", higher=True)
    else:
        compare("the initialization phase keeps content better in the same steps",
                "content_distance", "full", "no_init", higher=False)
        compare("L1 content loss gives flatter, more cartoon-like shading than L2",
                "colour_flatness", "full", "l2_content", higher=False)
    weights = [n for n in ("content_weight_1", "full", "content_weight_100") if n in results]
    if len(weights) == 3 and "content_distance" in results["full"]:
        values = [results[n]["content_distance"] for n in weights]
        verdicts["a larger content weight keeps more content (w = 1, 10, 100)"] = (
            values[0] > values[1] > values[2],
            "content_distance: " + ", ".join(f"{v:.4g}" for v in values) + " (lower is better)")
    return verdicts
