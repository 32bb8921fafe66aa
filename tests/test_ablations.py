"""Ablation variants are config changes of one recipe; finished runs are reused."""

import dataclasses
import warnings

import pytest

from cglib import ablations, train


def test_each_variant_changes_only_what_it_names(tmp_path):
    base = train.preset("paper", data="d")
    full = dataclasses.asdict(ablations.variant_config(base, "full", tmp_path))
    for name, (_, changes) in ablations.VARIANTS.items():
        variant = dataclasses.asdict(ablations.variant_config(base, name, tmp_path))
        differing = {k for k in full if full[k] != variant[k]} - {"out"}
        expected = set(changes) | ({"epochs", "decay_epochs"} if name == "no_init" else set())
        assert differing == expected, name
        assert variant["out"] == str(tmp_path / name)


def test_without_init_phase_the_step_budget_is_kept():
    base = train.preset("paper")
    variant = ablations.variant_config(base, "no_init", "x")
    assert variant.init_epochs + variant.init_decay_epochs == 0
    assert variant.epochs + variant.decay_epochs == 220


def test_unknown_variant_is_an_error():
    with pytest.raises(ValueError, match="unknown variant 'no_vgg'"):
        ablations.variant_config(train.preset("paper"), "no_vgg", "x")


def test_budget_then_parameters(tmp_path):
    config = ablations.base_config("demo", {"PROFILE": "demo", "EPOCHS": 5, "LR": None})
    assert config.epochs == 5 and config.steps_per_epoch == ablations.BUDGETS["demo"][
        "steps_per_epoch"]
    assert config.lr == train.TrainConfig().lr


def test_variants_run_are_measured_and_reused(tmp_path, tiny_dataset, monkeypatch):
    data = tiny_dataset
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        base = train.preset("smoke", data=str(data), image_size=32)
        first = ablations.run_variants(base, tmp_path / "runs", ["full", "no_edge_loss"],
                                       progress_bar=False)
        assert set(first) == {"full", "no_edge_loss"}
        assert all(row["edge_strength"] >= 0 and row["photos"] == base.samples
                   for row in first.values())

        def no_training(*args, **kwargs):
            raise AssertionError("a finished variant was trained again")

        monkeypatch.setattr(train.Trainer, "fit", no_training)
        again = ablations.run_variants(base, tmp_path / "runs", ["full", "no_edge_loss"],
                                       progress_bar=False)
    assert again == first


def test_claims_follow_the_numbers():
    rows = {"full": {"edge_strength": 5.0, "content_distance": 0.2, "colour_flatness": 40.0},
            "no_edge_loss": {"edge_strength": 3.0},
            "no_init": {"content_distance": 0.1},
            "content_weight_1": {"content_distance": 0.3},
            "content_weight_100": {"content_distance": 0.25}}
    verdicts = ablations.check_claims(rows)
    assert verdicts["the edge-promoting loss gives clearer edges"][0] is True
    assert verdicts["the initialization phase keeps content better in the same steps"][0] is False
    assert verdicts["a larger content weight keeps more content (w = 1, 10, 100)"][0] is False
    assert not any("L1" in claim for claim in verdicts)  # l2_content did not run
    rows["no_init"]["psnr"] = 20.0
    rows["full"]["psnr"] = 22.0
    assert ablations.check_claims(rows)[
        "the initialization phase gives a better result in the same steps"][0] is True
