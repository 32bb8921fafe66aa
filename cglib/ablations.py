"""The paper's ablations as named changes of one training recipe, each run with several seeds,
and its claims judged against the noise between seeds.

Each variant is a dict of :class:`cglib.config.TrainConfig` changes, not a copy of the training
code. :func:`run_variants` trains every variant with every seed (same data and step budget)
into ``<out>/<variant>/seed-<n>/``; its measures are those the trainer took of the final
generator on the data set's held-out photos (:class:`cglib.samples.Samples`). Finished runs are
found again, so a rerun retrains nothing, and an interrupted one resumes.

:data:`CLAIMS` are the paper's statements, each checked with one measure whatever else is
available, and never with a measure the training optimizes (the content loss compares VGG
features; content is judged here by the SSIM of output and photo). :func:`judge` calls a claim
*supported* when the difference of the means, in the claimed direction, exceeds the noise
floor: the larger of the two compared variants' spreads (highest minus lowest over their
seeds) on that measure; *contradicted* when it goes the other way by as much; *not resolved*
otherwise. Both spreads count because either recipe's seeds can scatter: with the ``full``
variant's spread alone, one outlying seed of the other variant moves its mean past the
floor while its other seeds sit inside the full recipe's band.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from cglib import checkpoints, data, demodata, files, runs, train
from cglib.config import DONE, RUNTIME_FIELDS, TrainConfig, preset

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

#: Per-profile step budget of each variant, on top of the training preset, and the seeds each
#: variant runs with. Every variant gets the same budget. demo: 40 steps per variant (20
#: initialization, 20 adversarial) at the demo preset's size; paper: the full schedule (days
#: on one GPU for all variants and seeds).
BUDGETS: dict[str, dict[str, Any]] = {
    "smoke": {},
    "demo": {"init_epochs": 1, "init_decay_epochs": 0, "epochs": 1, "decay_epochs": 0,
             "steps_per_epoch": 20},
    "paper": {},
}
SEEDS = {"smoke": 2, "demo": 3, "paper": 3}


@dataclass(frozen=True)
class Claim:
    """A statement of the paper, checked on ``measure`` (``higher`` is better, or lower) for
    each (better, worse) pair of variants in ``pairs``."""

    text: str
    measure: str
    higher: bool
    pairs: tuple[tuple[str, str], ...]


CLAIMS = (
    Claim("the initialization phase keeps more of the photo in the same steps",
          "ssim_to_photo", True, (("full", "no_init"),)),
    Claim("the edge-promoting loss gives clearer edges", "edge_strength", True,
          (("full", "no_edge_loss"),)),
    Claim("L1 content loss gives flatter, more cartoon-like shading than L2",
          "colour_flatness", False, (("full", "l2_content"),)),
    Claim("a larger content weight keeps more of the photo (w = 1, 10, 100)", "ssim_to_photo",
          True, (("full", "content_weight_1"), ("content_weight_100", "full"))),
)

def base_config(profile: str, **settings: Any) -> TrainConfig:
    """The recipe every variant starts from: the profile's training preset, then its ablation
    :data:`BUDGETS`, then ``settings`` (None keeps what is there)."""
    given = {name: value for name, value in settings.items() if value is not None}
    return preset(profile, **{**BUDGETS[profile], **given})


def variant_config(base: TrainConfig, name: str, seed: int,
                   out: str | Path) -> TrainConfig:
    """``base`` with variant ``name``'s changes and ``seed``, writing to
    ``out/name/seed-<seed>``. Removing the initialization phase moves its epochs to the
    adversarial phase, so every variant takes the same number of steps."""
    if name not in VARIANTS:
        raise ValueError(f"unknown variant {name!r}; the variants are: {', '.join(VARIANTS)}")
    changes = dict(VARIANTS[name][1])
    if changes.get("init_epochs") == 0:
        changes["epochs"] = base.epochs + base.init_epochs
        changes["decay_epochs"] = base.decay_epochs + base.init_decay_epochs
    return dataclasses.replace(base, out=str(Path(out) / name / f"seed-{seed}"), seed=seed,
                               **changes)


def finished(config: TrainConfig) -> dict | None:
    """The saved progress of a finished run of exactly this recipe in ``config.out``; None when
    there is none."""
    loaded = checkpoints.load_latest(Path(config.out) / "checkpoints")
    if loaded is None or loaded[0]["progress"]["phase"] != DONE:
        return None
    saved = loaded[0]["config"]
    same = all(saved.get(k) == v for k, v in dataclasses.asdict(config).items()
               if k not in RUNTIME_FIELDS)
    return loaded[0]["progress"] if same else None


def run_variants(base: TrainConfig, out: str | Path, names: list[str], seeds: int,
                 progress_bar: bool = True) -> dict[str, dict[str, dict[str, float]]]:
    """Train (or find) each variant with seeds 0 .. ``seeds`` - 1; returns ``{variant:
    {"seed-<n>": measures}}``: the final generator's :func:`cglib.metrics.epoch_measures` on
    the data set's first ``base.samples`` held-out photos, and ``train_seconds``.

    One progress bar counts the runs (variants x seeds) and names the one under way; the
    trainer's own per-epoch bars stay off. Runs finished earlier are reused, and said so
    once, with their count, at the end.

    After every run the results are merged into ``out/results.json`` (the variants and seeds
    of earlier calls are kept), with what the held-out photos are: how many, and how many
    come from each source photograph where the data set records it."""
    from tqdm.auto import tqdm

    out = Path(out)
    results: dict[str, dict[str, dict[str, float]]] = {}
    runs_to_do = [(name, seed) for name in names for seed in range(seeds)]
    reused = 0
    with tqdm(total=len(runs_to_do), unit="run", disable=not progress_bar) as bar:
        for name, seed in runs_to_do:
            config = variant_config(base, name, seed, out)
            bar.set_description(f"{name}, seed {seed}")
            measured, trained = _run_one(config)
            reused += not trained
            results.setdefault(name, {})[f"seed-{seed}"] = measured
            _save_results(out / "results.json", base, results)
            bar.update(1)
    if reused:
        print(f"{reused} of {len(runs_to_do)} runs finished earlier and were reused from {out}")
    return results


def _run_one(config: TrainConfig) -> tuple[dict[str, float], bool]:
    """The measures of the run of ``config`` (trained now unless it finished earlier) and
    whether it was trained now."""
    progress = finished(config)
    if progress is not None:
        seconds = progress["seconds"]
    else:
        trainer = train.Trainer(config, resume=True)
        trainer.fit(progress_bar=False)
        seconds = trainer.progress.seconds
    measured = runs.read_run(config.out).epochs[-1].measures
    if not measured:
        raise ValueError(f"{config.out} measured nothing: the run needs held-out photos "
                         f"(samples={config.samples}, and {config.data}/photos_test)")
    return {**measured, "train_seconds": seconds}, progress is None


def _save_results(path: Path, base: TrainConfig,
                  results: dict[str, dict[str, dict[str, float]]]) -> None:
    """Merge ``results`` into the results file at ``path``, atomically."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))["results"]
    except (OSError, ValueError, KeyError):  # none yet (it is rebuilt from the run folders)
        saved = {}
    for name, seeds in results.items():
        saved.setdefault(name, {}).update(seeds)
    count = min(base.samples, data.check_dataset(base.data)["photos_test"])
    held_out = {"photos": count,
                "per_source_photograph": demodata.composition(base.data, first=count)}
    files.write_json(path, {"held_out_photos": held_out, "results": saved})


def tabulate(results: dict[str, dict[str, dict[str, float]]]
              ) -> dict[str, dict[str, tuple[float, float]]]:
    """``{variant: {measure: (mean, standard deviation)}}`` over the seeds of each variant."""
    table: dict[str, dict[str, tuple[float, float]]] = {}
    for name, by_seed in results.items():
        for key in next(iter(by_seed.values())):
            values = np.array([run[key] for run in by_seed.values()])
            table.setdefault(name, {})[key] = (float(values.mean()), float(values.std()))
    return table


@dataclass(frozen=True)
class Verdict:
    """How a claim fared: ``supported``, ``not resolved`` or ``contradicted``, and the numbers
    it rests on."""

    claim: Claim
    verdict: str
    detail: str


def noise_floor(results: dict[str, dict[str, dict[str, float]]], measure: str,
                pair: tuple[str, str]) -> float | None:
    """The larger of the two spreads (highest minus lowest over the seeds) of the variants in
    ``pair`` on ``measure``: how far two runs of either recipe can fall apart by chance. None
    when either ran with fewer than two seeds (no floor can be told)."""
    spreads = []
    for name in pair:
        values = [run[measure] for run in results.get(name, {}).values()]
        if len(values) < 2:
            return None
        spreads.append(max(values) - min(values))
    return float(max(spreads))


def judge(results: dict[str, dict[str, dict[str, float]]],
          claims: tuple[Claim, ...] = CLAIMS) -> list[Verdict]:
    """Each claim whose variants ran, judged by the same rule (see the module docstring); a
    claim with several pairs is supported when all are, contradicted when any is."""
    verdicts = []
    for claim in claims:
        if not all(a in results and b in results for a, b in claim.pairs):
            continue
        outcomes, details = [], []
        for better, worse in claim.pairs:
            means = _mean(results[better], claim.measure), _mean(results[worse], claim.measure)
            difference = means[0] - means[1] if claim.higher else means[1] - means[0]
            floor = noise_floor(results, claim.measure, (better, worse))
            outcomes.append(_outcome(difference, floor))
            floor_text = "unknown (one seed)" if floor is None else f"{floor:.4g}"
            details.append(f"{better} {means[0]:.4g} vs {worse} {means[1]:.4g}, "
                           f"noise floor {floor_text}")
        verdict = ("contradicted" if "contradicted" in outcomes else
                   "supported" if set(outcomes) == {"supported"} else "not resolved")
        verdicts.append(Verdict(claim, verdict, f"{claim.measure}: {'; '.join(details)}"))
    return verdicts


def _mean(runs: dict[str, dict[str, float]], measure: str) -> float:
    """The mean of ``measure`` over the seeds in ``runs``."""
    return float(np.mean([run[measure] for run in runs.values()]))


def _outcome(difference: float, floor: float | None) -> str:
    """``difference`` in the claimed direction against the noise ``floor``."""
    if floor is None:
        return "not resolved"
    if difference > floor:
        return "supported"
    if difference < -floor:
        return "contradicted"
    return "not resolved"
