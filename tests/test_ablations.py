"""Ablation variants are config changes of one recipe, run with several seeds; finished runs
are reused; claims are judged against the noise between seeds."""

import dataclasses
import json
import warnings

import pytest

from cglib import ablations, data, inference, metrics, pretrained, train
from cglib.config import TrainConfig, preset


def test_each_variant_changes_only_what_it_names(tmp_path):
    base = preset("paper", data="d")
    full = dataclasses.asdict(ablations.variant_config(base, "full", 0, tmp_path))
    for name, (_, changes) in ablations.VARIANTS.items():
        variant = dataclasses.asdict(ablations.variant_config(base, name, 0, tmp_path))
        differing = {k for k in full if full[k] != variant[k]} - {"out"}
        expected = set(changes) | ({"epochs", "decay_epochs"} if name == "no_init" else set())
        assert differing == expected, name
        assert variant["out"] == str(tmp_path / name / "seed-0")
    assert ablations.variant_config(base, "full", 2, tmp_path).seed == 2


def test_without_init_phase_the_step_budget_is_kept():
    base = preset("paper")
    variant = ablations.variant_config(base, "no_init", 0, "x")
    assert variant.init_epochs + variant.init_decay_epochs == 0
    assert variant.epochs + variant.decay_epochs == 220


def test_unknown_variant_is_an_error():
    with pytest.raises(ValueError, match="unknown variant 'no_vgg'"):
        ablations.variant_config(preset("paper"), "no_vgg", 0, "x")


def test_budget_then_settings():
    config = ablations.base_config("demo", epochs=5, lr=None)
    assert config.epochs == 5 and config.steps_per_epoch == ablations.BUDGETS["demo"][
        "steps_per_epoch"]
    assert config.lr == TrainConfig().lr
    # a notebook passes every parameter, None where it has no value: the budget stays
    unset = ablations.base_config("demo", epochs=None, init_epochs=None, steps_per_epoch=None)
    budget = ablations.BUDGETS["demo"]
    assert (unset.epochs, unset.init_epochs, unset.steps_per_epoch) == (
        budget["epochs"], budget["init_epochs"], budget["steps_per_epoch"])


def test_variants_run_with_seeds_are_measured_and_reused(tmp_path, tiny_dataset, monkeypatch,
                                                         capsys):
    base = preset("smoke", data=str(tiny_dataset), image_size=32)
    fit, bars = train.Trainer.fit, []

    def fit_recording_its_bar(self, *args, **kwargs):
        bars.append(kwargs.get("progress_bar", True))
        return fit(self, *args, **kwargs)

    monkeypatch.setattr(train.Trainer, "fit", fit_recording_its_bar)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        first = ablations.run_variants(base, tmp_path / "runs", ["full", "no_edge_loss"], 2)
    assert bars == [False] * 4  # the trainer's per-epoch bars stay off inside the ablations
    assert "reused" not in capsys.readouterr().out
    assert set(first) == {"full", "no_edge_loss"}
    assert set(first["full"]) == {"seed-0", "seed-1"}
    assert first["full"]["seed-0"] != first["full"]["seed-1"]  # the seed changes the run
    assert all({claim.measure for claim in ablations.CLAIMS} <= set(row)
               for runs in first.values() for row in runs.values())
    # the measures are the trainer's own of the final generator, on the held-out photos
    photos = data.load_images(tiny_dataset / "photos_test", base.samples, 32)
    generator = pretrained.load_generator(tmp_path / "runs" / "full" / "seed-0" / "generator.pt")
    outputs = inference.cartoonize(generator, photos, precision="fp32")
    expected = metrics.epoch_measures(outputs, photos)
    assert {k: first["full"]["seed-0"][k] for k in expected} == pytest.approx(expected)

    def no_training(*args, **kwargs):
        raise AssertionError("a finished variant was trained again")

    monkeypatch.setattr(train.Trainer, "fit", no_training)
    again = ablations.run_variants(base, tmp_path / "runs", ["full", "no_edge_loss"], 2)
    assert again == first
    said = capsys.readouterr()
    assert said.out == (f"4 of 4 runs finished earlier and were reused from "
                        f"{tmp_path / 'runs'}\n")  # said once, with a count
    assert "no_edge_loss, seed 1" in said.err and "4/4" in said.err  # one bar over the runs
    # a later call with fewer variants keeps what earlier calls wrote in results.json
    ablations.run_variants(base, tmp_path / "runs", ["full"], 1, progress_bar=False)
    saved = json.loads((tmp_path / "runs" / "results.json").read_text())
    assert saved["results"] == first
    assert saved["held_out_photos"]["photos"] == len(photos)


def seeds(*values):
    return {f"seed-{n}": {"edge_strength": v, "ssim_to_photo": v, "colour_flatness": v}
            for n, v in enumerate(values)}


def verdict_of(results, claim):
    return {v.claim.text: v.verdict for v in ablations.judge(results, (claim,))}[claim.text]


def test_a_claim_needs_a_difference_beyond_the_spread_of_either_variants_seeds():
    edges = ablations.CLAIMS[1]
    full = seeds(5.0, 5.4, 5.2)  # spread 0.4
    rows = {"full": full, "no_edge_loss": seeds(4.5, 4.7, 4.6)}  # spread 0.2
    assert ablations.noise_floor(rows, "edge_strength", ("full", "no_edge_loss")
                                 ) == pytest.approx(0.4)
    # one outlying seed: the mean moves 0.97 below full's, past full's spread (0.4) but not
    # past the variant's own (1.3), so the difference may be that seed alone
    scattered = {"full": full, "no_edge_loss": seeds(4.6, 4.7, 3.4)}
    assert ablations.noise_floor(scattered, "edge_strength", ("full", "no_edge_loss")
                                 ) == pytest.approx(1.3)
    assert verdict_of(scattered, edges) == "not resolved"
    assert verdict_of({"full": full, "no_edge_loss": seeds(4.5, 4.7, 4.6)}, edges) == "supported"
    assert verdict_of({"full": full, "no_edge_loss": seeds(5.0, 5.1, 4.9)},
                      edges) == "not resolved"
    assert verdict_of({"full": full, "no_edge_loss": seeds(5.8, 5.9, 6.0)},
                      edges) == "contradicted"
    one_seed = {"full": seeds(5.0), "no_edge_loss": seeds(1.0)}
    assert verdict_of(one_seed, edges) == "not resolved"  # no floor without a second seed


def test_lower_is_better_claims_and_claims_of_several_pairs():
    flatness, weight = ablations.CLAIMS[2], ablations.CLAIMS[3]
    full = seeds(100.0, 110.0)
    assert verdict_of({"full": full, "l2_content": seeds(150.0, 160.0)},
                      flatness) == "supported"
    # two of three L2 seeds inside the full recipe's band, one far out: not resolved
    band = {"full": seeds(250.0, 262.0, 270.0), "l2_content": seeds(249.0, 265.0, 360.0)}
    assert verdict_of(band, flatness) == "not resolved"
    band["l2_content"] = seeds(300.0, 305.0, 310.0)
    assert verdict_of(band, flatness) == "supported"
    rows = {"full": seeds(0.50, 0.52), "content_weight_1": seeds(0.40, 0.41),
            "content_weight_100": seeds(0.60, 0.61)}
    assert verdict_of(rows, weight) == "supported"
    rows["content_weight_100"] = seeds(0.51, 0.52)
    assert verdict_of(rows, weight) == "not resolved"
    rows["content_weight_100"] = seeds(0.30, 0.31)
    assert verdict_of(rows, weight) == "contradicted"
    assert ablations.judge({"full": full}) == []  # no variant to compare: nothing claimed


def test_summary_is_mean_and_spread_over_seeds():
    table = ablations.tabulate({"full": seeds(1.0, 3.0)})
    assert table["full"]["edge_strength"] == (2.0, 1.0)
