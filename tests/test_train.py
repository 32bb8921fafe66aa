"""The trainer: presets, the generated command line, schedules, exact resumption, faults."""

import dataclasses
import json
import warnings

import pytest
import torch
from conftest import write_dataset

from cglib import checkpoints, pretrained, train
from cglib.__main__ import main


def smoke(tmp_path, **overrides):
    data = write_dataset(tmp_path / "data")
    settings = {"data": str(data), "out": str(tmp_path / "run"), "image_size": 32}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # random VGG filters, on purpose
        return train.preset("smoke", **{**settings, **overrides})


def quiet_trainer(config, resume=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return train.Trainer(config, resume=resume)


def test_defaults_are_the_authors_settings():
    config = train.TrainConfig()
    assert (config.batch_size, config.image_size, config.beta1, config.beta2) == (8, 256, 0.5,
                                                                                  0.999)
    assert (config.init_lr, config.init_epochs, config.init_decay_epochs) == (2e-4, 10, 10)
    assert (config.lr, config.epochs, config.decay_epochs) == (1e-5, 100, 100)
    assert (config.adversarial_loss, config.content_loss, config.content_weight) == ("lsgan",
                                                                                     "l1", 10.0)
    assert config.pool_size == 50 and config.zero_biases and config.norm == "instance"
    assert (config.generator_width, config.residual_blocks, config.discriminator_width) == (64, 8,
                                                                                            32)
    assert dataclasses.replace(train.preset("paper"), description="") == config


def test_unknown_setting_is_an_error_everywhere():
    with pytest.raises(ValueError, match="unknown training setting.*epocs"):
        train.preset("demo", epocs=3)
    with pytest.raises(ValueError, match="epocs"):
        train.config_from_parameters("demo", {"PROFILE": "demo", "EPOCS": 3})
    with pytest.raises(SystemExit):
        main(["train", "--data", "x", "--out", "y", "--epocs", "3"])


def test_bad_values_are_errors():
    with pytest.raises(ValueError, match="adversarial_loss"):
        train.preset("paper", adversarial_loss="hinge")
    with pytest.raises(ValueError, match="multiple of 4"):
        train.preset("paper", image_size=30)


def test_parameters_map_to_fields():
    config = train.config_from_parameters(
        "smoke", {"PROFILE": "smoke", "EPOCHS": 3, "LR": 0.5, "BATCH_SIZE": None, "SEED": 4,
                  "DATA_DIR": "x", "lowercase": 1}, ignore=("DATA_DIR",), data="y")
    assert (config.epochs, config.lr, config.seed, config.data) == (3, 0.5, 4, "y")
    assert config.batch_size == train.PRESETS["smoke"]["batch_size"]


def test_command_line_is_generated_from_the_dataclass():
    import argparse

    parser = argparse.ArgumentParser()
    train.add_config_arguments(parser)
    args = parser.parse_args(["--content-weight", "1.5", "--no-edge-loss", "--batch-size", "3"])
    assert vars(args) == {"content_weight": 1.5, "edge_loss": False, "batch_size": 3}
    options = {a.dest for a in parser._actions} - {"help"}
    assert options == {f.name for f in dataclasses.fields(train.TrainConfig)}


def test_learning_rate_is_constant_then_linear_to_zero():
    assert train.learning_rate(1.0, 10, 10, 0) == 1.0
    assert train.learning_rate(1.0, 10, 10, 9.99) == 1.0
    assert train.learning_rate(1.0, 10, 10, 15) == pytest.approx(0.5)
    assert train.learning_rate(1.0, 10, 10, 20) == 0.0
    assert train.learning_rate(1.0, 3, 0, 7) == 1.0


def test_resumable_batches_continue_where_they_stopped():
    straight = iter(train.ResumableBatches(10, 3, seed=1))
    first = [next(straight) for _ in range(7)]  # crosses an epoch boundary (3 batches each)
    resumed = iter(train.ResumableBatches(10, 3, seed=1, start=4))
    assert [next(resumed) for _ in range(3)] == first[4:7]
    assert sorted(sum(first[:3], [])) != list(range(9))  # shuffled, 9 of 10 images per epoch
    other = iter(train.ResumableBatches(10, 3, seed=2))
    assert [next(other) for _ in range(3)] != first[:3]


def test_too_small_domain_is_a_clear_error():
    with pytest.raises(ValueError, match="fewer than one batch"):
        train.ResumableBatches(2, 4, seed=0)


def test_interrupted_and_resumed_run_equals_the_straight_run(tmp_path):
    straight = quiet_trainer(smoke(tmp_path / "a"))
    straight.fit(progress_bar=False)
    assert straight.done and straight.progress.step == 6  # 2 init + 2 x 2 adversarial steps

    config = smoke(tmp_path / "b")
    first = quiet_trainer(config)
    first.fit(until_step=3, progress_bar=False)  # stops inside the adversarial phase
    first.save_checkpoint()
    del first
    resumed = quiet_trainer(config, resume=True)
    assert resumed.progress.step == 3 and resumed.progress.phase == "adversarial"
    resumed.fit(progress_bar=False)
    assert resumed.done
    for name in ("generator", "discriminator"):
        a = getattr(straight, name).state_dict()
        b = getattr(resumed, name).state_dict()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}.{key} differs after resuming"


def test_checkpoints_load_with_weights_only_and_hold_everything(tmp_path):
    trainer = quiet_trainer(smoke(tmp_path, keep_checkpoints=2))
    trainer.fit(progress_bar=False)
    saved = checkpoints.list_checkpoints(trainer.checkpoint_folder)
    assert len(saved) == 2  # rotation keeps the newest two
    state = torch.load(saved[-1], weights_only=True)
    assert {"config", "progress", "models", "optimizers", "scaler", "pool", "rng"} <= set(state)
    assert state["progress"]["phase"] == "done" and state["config"]["seed"] == 0
    assert state["pool"]["count"] > 0
    exported = pretrained.load_official(trainer.out / "generator.pt")
    photo = torch.rand(1, 3, 32, 32) * 2 - 1
    trainer.generator.eval()
    with torch.no_grad():
        assert torch.allclose(exported(photo), trainer.generator(photo), atol=1e-6)
    lines = [json.loads(x) for x in (trainer.out / "metrics.jsonl").read_text().splitlines()]
    assert {"init", "adversarial"} == {line["phase"] for line in lines}
    assert list((trainer.out / "samples").glob("adversarial-epoch*.png"))


def test_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path):
    config = smoke(tmp_path)
    trainer = quiet_trainer(config)
    trainer.fit(until_step=2, progress_bar=False)
    trainer.save_checkpoint()
    trainer.fit(until_step=3, progress_bar=False)
    newest = trainer.save_checkpoint()
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.warns(UserWarning, match="cannot be read"):
        resumed = train.Trainer(config, resume=True)
    assert resumed.progress.step == 2


def test_resume_with_other_recipe_is_refused(tmp_path):
    config = smoke(tmp_path)
    trainer = quiet_trainer(config)
    trainer.fit(until_step=1, progress_bar=False)
    trainer.save_checkpoint()
    with pytest.raises(ValueError, match="content_weight"):
        quiet_trainer(dataclasses.replace(config, content_weight=1.0), resume=True)
    assert quiet_trainer(dataclasses.replace(config, workers=0, log_every=5),
                         resume=True).progress.step == 1


def test_missing_data_or_empty_domain_fails_before_any_work(tmp_path):
    config = smoke(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        quiet_trainer(dataclasses.replace(config, data=str(tmp_path / "nowhere")))
    for image in (tmp_path / "data" / "cartoons").iterdir():
        image.unlink()
    with pytest.raises(FileNotFoundError, match="cartoons"):
        quiet_trainer(config)
    assert not (tmp_path / "run").exists()


def test_bad_image_in_the_middle_does_not_stop_training(tmp_path):
    config = smoke(tmp_path, in_memory=False)
    trainer = quiet_trainer(config)
    (tmp_path / "data" / "photos" / "002.png").write_bytes(b"this is not a png")
    with pytest.warns(UserWarning, match="002.png"):
        trainer.fit(progress_bar=False)
    assert trainer.done


def test_non_finite_losses_are_skipped_then_stop_without_bad_weights(tmp_path, monkeypatch):
    trainer = quiet_trainer(smoke(tmp_path, max_nonfinite=1))
    before = {k: v.clone() for k, v in trainer.generator.state_dict().items()}

    def broken(photos, generated):
        return generated.mean() * float("nan"), torch.tensor(float("nan"))

    monkeypatch.setattr(trainer.content, "forward", broken)
    with pytest.raises(train.NonFiniteLossError, match="NaN or infinite"):
        trainer.fit(progress_bar=False)
    assert trainer.progress.nonfinite == 2
    after = trainer.generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no step was taken


def test_checkpoint_with_non_finite_weights_is_never_written(tmp_path):
    trainer = quiet_trainer(smoke(tmp_path))
    with torch.no_grad():
        next(trainer.generator.parameters()).fill_(float("inf"))
    with pytest.raises(ValueError, match="NaN or infinite"):
        trainer.save_checkpoint()
    assert checkpoints.list_checkpoints(trainer.checkpoint_folder) == []


def test_command_line_trains_and_resumes(tmp_path, capsys):
    data = write_dataset(tmp_path / "data")
    args = ["train", "--profile", "smoke", "--data", str(data), "--out", str(tmp_path / "run"),
            "--image-size", "32", "--vgg-weights", "random"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        assert main(args) == 0
        assert main(args + ["--resume"]) == 0
    printed = capsys.readouterr().out
    assert "resuming from" in printed and (tmp_path / "run" / "generator.pt").is_file()


def test_a_run_without_initialization_phase_starts_adversarial(tmp_path):
    trainer = quiet_trainer(smoke(tmp_path, init_epochs=0, init_decay_epochs=0))
    assert trainer.progress.phase == "adversarial"
    trainer.fit(progress_bar=False)
    assert trainer.done and {r["phase"] for r in train.read_metrics(trainer.out)} == {
        "adversarial"}


def test_initial_generator_is_where_the_trainer_starts(tmp_path):
    config = smoke(tmp_path)
    trainer = quiet_trainer(config)
    fresh = train.initial_generator(config).state_dict()
    assert all(torch.equal(v, fresh[k]) for k, v in trainer.generator.state_dict().items())
