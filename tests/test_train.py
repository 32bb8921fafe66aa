"""The trainer: presets, the generated command line, schedules, exact resumption, faults, the
run folder's safety, settings checked before any work."""

import dataclasses
import errno
import gc
import json
import os
import re
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from conftest import write_dataset

from cglib import checkpoints, env, files, models, pretrained, runs, steps, train
from cglib import data as data_module
from cglib.__main__ import main
from cglib.config import PHASES, TrainConfig, add_config_arguments, learning_rate, preset


def smoke(tmp_path, **overrides):
    data = write_dataset(tmp_path / "data")
    settings = {"data": str(data), "out": str(tmp_path / "run"), "image_size": 32}
    return preset("smoke", **{**settings, **overrides})


def trainer(config, resume=False, overwrite=False):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return train.Trainer(config, resume=resume, overwrite=overwrite)


def same_weights(a, b):
    for name in ("generator", "discriminator"):
        first = getattr(a.networks, name).state_dict()
        second = getattr(b.networks, name).state_dict()
        for key in first:
            assert torch.equal(first[key], second[key]), f"{name}.{key} differs"


# -- settings -------------------------------------------------------------------------------------


def test_defaults_are_the_authors_settings():
    config = TrainConfig()
    assert (config.batch_size, config.image_size, config.beta1, config.beta2) == (8, 256, 0.5,
                                                                                  0.999)
    assert (config.init_lr, config.init_epochs, config.init_decay_epochs) == (2e-4, 10, 10)
    assert (config.lr, config.epochs, config.decay_epochs) == (1e-5, 100, 100)
    assert (config.adversarial_loss, config.content_loss, config.content_weight) == ("lsgan",
                                                                                     "l1", 10.0)
    assert config.pool_size == 50 and config.zero_biases and config.norm == "instance"
    assert (config.generator_width, config.residual_blocks, config.discriminator_width) == (64, 8,
                                                                                            32)
    assert config.content_layer == "conv4_4" and config.vgg_weights == "imagenet"
    assert dataclasses.replace(preset("paper"), description="") == config


def test_unknown_setting_is_an_error_everywhere():
    with pytest.raises(ValueError, match="unknown training setting.*epocs"):
        preset("demo", epocs=3)
    with pytest.raises(SystemExit):
        main(["train", "--data", "x", "--out", "y", "--epocs", "3"])


@pytest.mark.parametrize("setting,message", [
    ({"lr": -1.0}, "lr=-1.0 must be positive"),
    ({"lr": float("nan")}, "lr=nan must be a finite number"),
    ({"init_lr": 0.0}, "init_lr=0.0 must be positive"),
    ({"beta1": 1.5}, r"beta1=1.5 must be in \[0, 1\)"), ({"beta2": -0.1}, "beta2=-0.1"),
    ({"content_weight": -1.0}, "content_weight"), ({"adversarial_loss": "hinge"}, "hinge"),
    ({"image_size": 30}, "multiple of 4"), ({"content_layer": "conv9_9"}, "conv9_9"),
    ({"max_nonfinite": -1}, "max_nonfinite")])
def test_bad_settings_are_refused_before_any_work(setting, message, tmp_path, capsys):
    with pytest.raises(ValueError, match=message):
        preset("paper", **setting)
    flag, value = next(iter(setting.items()))
    data = write_dataset(tmp_path / "data")
    code = main(["train", "--profile", "smoke", "--data", str(data), "--out",
                 str(tmp_path / "run"), f"--{flag.replace('_', '-')}", str(value)])
    error = capsys.readouterr().err
    assert code == 2 and error.startswith("error: ") and error.count("\n") == 1
    assert not (tmp_path / "run").exists()


def test_a_domain_shorter_than_a_batch_is_named_before_any_work(tmp_path, capsys):
    data = write_dataset(tmp_path / "short", counts={"photos": 6, "photos_test": 2,
                                                     "cartoons": 3, "cartoons_smoothed": 6})
    code = main(["train", "--profile", "smoke", "--data", str(data), "--out",
                 str(tmp_path / "run"), "--batch-size", "4"])
    error = capsys.readouterr().err
    assert code == 2 and error.count("\n") == 1
    assert "cartoons holds 3 images, fewer than one batch of 4" in error
    assert not (tmp_path / "run").exists()
    # a run without the adversarial phase does not need the cartoons
    config = smoke(tmp_path, data=str(data), batch_size=4, epochs=0, decay_epochs=0)
    assert trainer(config).counts["cartoons"] == 3


def test_command_line_is_generated_from_the_dataclass():
    import argparse

    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    args = parser.parse_args(["--content-weight", "1.5", "--no-edge-loss", "--batch-size", "3"])
    assert vars(args) == {"content_weight": 1.5, "edge_loss": False, "batch_size": 3}
    options = {a.dest for a in parser._actions} - {"help"}
    assert options == {f.name for f in dataclasses.fields(TrainConfig)}


def test_learning_rate_is_constant_then_linear_to_zero():
    assert learning_rate(1.0, 10, 10, 0) == 1.0
    assert learning_rate(1.0, 10, 10, 9.99) == 1.0
    assert learning_rate(1.0, 10, 10, 15) == pytest.approx(0.5)
    assert learning_rate(1.0, 10, 10, 20) == 0.0
    assert learning_rate(1.0, 3, 0, 7) == 1.0


# -- precision ------------------------------------------------------------------------------------


def test_precision_on_a_cpu(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: False)
    assert env.training_precision("auto", cpu, lambda: True)[0] == "fp32"
    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: True)
    assert env.training_precision("auto", cpu, lambda: True)[0] == "bf16"
    assert env.training_precision("auto", cpu, lambda: False)[0] == "fp32"
    with pytest.raises(ValueError, match="precision='fp16' needs a CUDA GPU"):
        env.training_precision("fp16", cpu)


def test_bf16_check_passes_on_the_real_model_and_fails_on_broken_losses(tmp_path, monkeypatch):
    run = trainer(smoke(tmp_path, precision="fp32"))
    photos = train._check_photos(run.data_root, run.config, run.device)
    assert steps.bf16_agrees(run.networks.generator, run.networks.content, photos, 2e-4)
    forward = run.networks.content.vgg.forward

    def nan_in_bf16(images):
        features = forward(images)
        return features * float("nan") if torch.is_autocast_enabled("cpu") else features

    monkeypatch.setattr(run.networks.content.vgg, "forward", nan_in_bf16)
    assert not steps.bf16_agrees(run.networks.generator, run.networks.content, photos, 2e-4)


# -- resuming exactly -----------------------------------------------------------------------------


def test_interrupted_and_resumed_run_equals_the_straight_run(tmp_path):
    straight = trainer(smoke(tmp_path / "a"))
    straight.fit(progress_bar=False)
    assert straight.done and straight.progress.step == 6  # 2 init + 2 x 2 adversarial steps

    config = smoke(tmp_path / "b")
    first = trainer(config)
    first.fit(until_step=3, progress_bar=False)  # stops inside the adversarial phase
    first.save_checkpoint()
    del first
    resumed = trainer(config, resume=True)
    assert resumed.progress.step == 3 and resumed.progress.phase == "adversarial"
    resumed.fit(progress_bar=False)
    assert resumed.done
    same_weights(straight, resumed)


def test_ctrl_c_stops_at_a_step_boundary_and_resumes_exactly(tmp_path, monkeypatch):
    """Ctrl-C arrives in the middle of step 3 (inside its content loss): the step finishes,
    a checkpoint of exactly 4 steps is written, and the resumed run equals the straight one."""
    straight = trainer(smoke(tmp_path / "a"))
    straight.fit(progress_bar=False)

    config = smoke(tmp_path / "b")
    run = trainer(config)
    calls = []
    forward = run.networks.content.forward

    def interrupting(photos, generated):
        calls.append(1)
        if len(calls) == 4:  # step index 3: the second adversarial step
            os.kill(os.getpid(), signal.SIGINT)
        return forward(photos, generated)

    monkeypatch.setattr(run.networks.content, "forward", interrupting)
    with pytest.raises(train.Interrupted, match="checkpoint .*checkpoint-00000004.pt written"):
        run.fit(progress_bar=False)
    monkeypatch.undo()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    saved = torch.load(checkpoints.list_checkpoints(run.folder.checkpoints)[-1], weights_only=True)
    assert saved["progress"]["step"] == 4 and saved["progress"]["batches"]["photos"] == 4
    resumed = trainer(config, resume=True)
    resumed.fit(progress_bar=False)
    same_weights(straight, resumed)


def test_sigterm_stops_at_a_step_boundary_like_ctrl_c_and_exits_143(tmp_path, monkeypatch,
                                                                    sigterm_in_test):
    run = trainer(smoke(tmp_path))
    calls = []
    forward = run.networks.content.forward

    def terminated(photos, generated):
        calls.append(1)
        if len(calls) == 2:
            os.kill(os.getpid(), signal.SIGTERM)  # `timeout`, Docker, Slurm, Colab
        return forward(photos, generated)

    monkeypatch.setattr(run.networks.content, "forward", terminated)
    with pytest.raises(train.Interrupted, match="checkpoint .*checkpoint-00000002.pt written"
                       ) as stopped:
        run.fit(progress_bar=False)
    assert stopped.value.signal == signal.SIGTERM and files.exit_status(stopped.value) == 143
    assert signal.getsignal(signal.SIGTERM) is sigterm_in_test
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_resume_sweeps_the_temporaries_of_a_killed_process(tmp_path):
    config = smoke(tmp_path)
    trainer(config)
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    run = Path(config.out)
    (run / "checkpoints").mkdir(exist_ok=True)
    left = [run / "checkpoints" / f".checkpoint-00000004.pt.{int(done.stdout)}.0123abcd.tmp",
            run / f".generator.pt.{int(done.stdout)}.0123abcd.tmp"]
    for path in left:
        path.write_bytes(b"half")  # kill -9 while writing
    trainer(config, resume=True)
    assert not any(path.exists() for path in left)


def test_ctrl_c_on_the_command_line_is_one_line_and_resumes_exactly(tmp_path):
    """A real SIGINT to a real training process, then --resume: bit-identical to a run that
    was never interrupted."""
    data = write_dataset(tmp_path / "data")
    args = [sys.executable, "-m", "cglib", "train", "--profile", "smoke", "--data", str(data),
            "--image-size", "32", "--steps-per-epoch", "40", "--epochs", "1", "--decay-epochs",
            "1", "--checkpoint-every", "5"]
    environment = {**os.environ, "PYTHONUNBUFFERED": "1"}
    subprocess.run([*args, "--out", str(tmp_path / "straight")], check=True, env=environment,
                   capture_output=True)
    process = subprocess.Popen([*args, "--out", str(tmp_path / "run")], env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not checkpoints.list_checkpoints(tmp_path / "run" / "checkpoints"):
        assert time.time() < deadline and process.poll() is None, process.communicate()
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, error = process.communicate(timeout=120)
    assert process.returncode == 130, error
    assert "Traceback" not in error and error.strip().splitlines()[-1].startswith(
        "interrupted: checkpoint")
    subprocess.run([*args, "--out", str(tmp_path / "run"), "--resume"], check=True,
                   env=environment, capture_output=True)
    a = pretrained.load_generator(tmp_path / "straight" / "generator.pt").state_dict()
    b = pretrained.load_generator(tmp_path / "run" / "generator.pt").state_dict()
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_metrics_hold_each_step_once_after_a_resume(tmp_path):
    config = smoke(tmp_path)
    first = trainer(config)
    first.fit(until_step=3, progress_bar=False)
    first.save_checkpoint()
    first.fit(until_step=5, progress_bar=False)  # steps 4 and 5 logged, then "killed"
    resumed = trainer(config, resume=True)
    assert resumed.progress.step == 4  # the epoch-end checkpoint after step 4
    resumed.fit(progress_bar=False)
    lines = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text()
             .splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 3, 4, 5, 6]
    assert [line.epoch for line in runs.read_run(tmp_path / "run").epochs] == [1, 1, 2]


def test_checkpoints_load_with_weights_only_and_hold_everything(tmp_path):
    run = trainer(smoke(tmp_path, keep_checkpoints=2))
    run.fit(progress_bar=False)
    saved = checkpoints.list_checkpoints(run.folder.checkpoints)
    assert len(saved) == 2  # rotation keeps the newest two
    state = torch.load(saved[-1], weights_only=True)
    assert {"config", "progress", "models", "optimizers", "scaler", "pool", "rng"} <= set(state)
    assert state["progress"]["phase"] == "done" and state["config"]["seed"] == 0
    assert state["pool"]["count"] > 0
    exported = pretrained.load_generator(run.folder.path / "generator.pt")
    photo = torch.rand(1, 3, 32, 32) * 2 - 1
    run.networks.generator.eval()
    with torch.no_grad():
        assert torch.allclose(exported(photo), run.networks.generator(photo), atol=1e-6)
    record = runs.read_run(run.folder.path)
    assert {"init", "adversarial"} == {line["phase"] for line in record.metrics}
    assert [(e.phase, e.epoch) for e in record.epochs] == [("init", 1), ("adversarial", 1),
                                                           ("adversarial", 2)]
    for epoch in record.epochs:
        assert (run.folder.path / epoch.samples).is_file()
        assert (run.folder.path / epoch.generator).is_file()
        assert set(epoch.measures) == {"edge_strength", "colour_flatness", "ssim_to_photo"}


def test_truncated_checkpoint_falls_back_to_the_previous_one(tmp_path):
    config = smoke(tmp_path)
    run = trainer(config)
    run.fit(until_step=2, progress_bar=False)
    run.save_checkpoint()
    run.fit(until_step=3, progress_bar=False)
    newest = run.save_checkpoint()
    newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    with pytest.warns(UserWarning, match="cannot be read"):
        resumed = train.Trainer(config, resume=True)
    assert resumed.progress.step == 2


def test_a_checkpoint_of_another_shape_is_named_on_resume(tmp_path, capsys):
    """A checkpoint that holds a list is passed over like a damaged one, with a warning naming
    it; one whose tensors do not fit the run is refused in one line naming it and the fix."""
    config = smoke(tmp_path)
    run = trainer(config)
    run.fit(until_step=2, progress_bar=False)
    previous = run.save_checkpoint()
    run.fit(until_step=3, progress_bar=False)
    newest = run.save_checkpoint()
    torch.save([1, 2], newest)
    with pytest.warns(UserWarning, match=re.escape(
            f"checkpoint {newest} cannot be read (ValueError: it holds a list, not a training "
            "checkpoint); falling back to the previous one")):
        assert train.Trainer(config, resume=True).progress.step == 2
    state = torch.load(previous, weights_only=True)
    state["models"]["generator"]["flat.conv.weight"] = torch.zeros(8, 3, 5, 5)
    torch.save(state, previous)
    newest.unlink()
    with pytest.raises(ValueError) as caught:
        trainer(config, resume=True)
    message = str(caught.value)
    assert message.startswith(f"checkpoint {previous} does not fit the run it continues (")
    assert "size mismatch for flat.conv.weight" in message and "\n" not in message
    assert message.endswith(f"move it out of {previous.parent} to resume from the one before "
                            "it")


def test_resume_with_other_recipe_is_refused(tmp_path):
    config = smoke(tmp_path)
    run = trainer(config)
    run.fit(until_step=1, progress_bar=False)
    run.save_checkpoint()
    with pytest.raises(ValueError, match="content_weight"):
        trainer(dataclasses.replace(config, content_weight=1.0), resume=True)
    assert trainer(dataclasses.replace(config, workers=0, log_every=5),
                   resume=True).progress.step == 1


# -- the run folder -------------------------------------------------------------------------------


def test_a_second_run_into_a_run_folder_is_refused_and_the_first_kept(tmp_path, capsys):
    config = smoke(tmp_path)
    first = trainer(config)
    first.fit(until_step=3, progress_bar=False)
    first.save_checkpoint()
    before = sorted(p.name for p in (tmp_path / "run").rglob("*"))
    with pytest.raises(FileExistsError, match="holds a training run already; .*--resume"):
        trainer(dataclasses.replace(config, seed=1))
    args = ["train", "--profile", "smoke", "--data", config.data, "--out", config.out,
            "--image-size", "32", "--seed", "1"]
    capsys.readouterr()
    assert main(args) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "--overwrite" in error and "new --out" in error
    assert sorted(p.name for p in (tmp_path / "run").rglob("*")) == before
    assert main([*args, "--overwrite"]) == 0
    moved = [p for p in tmp_path.iterdir() if p.name.startswith("run.replaced-")]
    assert len(moved) == 1 and sorted(p.name for p in moved[0].rglob("*")) == before
    assert json.loads((tmp_path / "run" / "config.json").read_text())["seed"] == 1


def hold_run_folder(folder: Path) -> subprocess.Popen:
    """Another process that claims ``folder`` (as a resumed run would) and holds it."""
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom cglib import runs\n"
         "held = runs.claim(sys.argv[1], resume=True, overwrite=False)\n"
         "print('held', flush=True)\ntime.sleep(600)", str(folder)],
        stdout=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(Path(runs.__file__).parents[1])})
    assert holder.stdout.readline() == "held\n"
    return holder


def test_a_run_folder_in_use_by_another_process_is_refused_until_it_ends(tmp_path, capsys):
    """While another process trains in a run folder, --resume and --overwrite there are
    refused before any work, naming the folder and that process; once it is killed (SIGKILL:
    no clean-up ran) the folder is free at once."""
    config = smoke(tmp_path)
    first = trainer(config)
    first.fit(until_step=2, progress_bar=False)
    del first  # this process no longer trains there
    gc.collect()
    contents = {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    holder = hold_run_folder(tmp_path / "run")
    try:
        args = ["train", "--profile", "smoke", "--data", config.data, "--out", config.out,
                "--image-size", "32"]
        capsys.readouterr()
        for extra in ("--resume", "--overwrite"):
            assert main([*args, extra]) == 2
            error = capsys.readouterr().err
            assert error == (f"error: {tmp_path / 'run'} is in use: process {holder.pid} "
                             "trains in it; wait for it to end or stop it, then run again, or "
                             "choose another --out\n")
        assert not [p for p in tmp_path.iterdir() if ".replaced-" in p.name]
        assert {p: p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()} == {
            **contents, tmp_path / "run" / ".lock": f"{holder.pid}\n".encode()}
    finally:
        holder.kill()
        holder.wait()
    assert main([*args, "--resume"]) == 0
    assert "resuming from" in capsys.readouterr().out
    assert (tmp_path / "run" / ".lock").read_text() == f"{os.getpid()}\n"


def test_a_file_system_without_locks_trains_with_a_warning(tmp_path, monkeypatch):
    def unsupported(file, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(runs.fcntl, "flock", unsupported)
    with pytest.warns(UserWarning, match=r"run cannot be locked \(No locks available\): make"):
        folder, held = runs.claim(tmp_path / "run", resume=False, overwrite=False)
    assert folder == (tmp_path / "run").resolve() and held.file.closed is False


def test_a_data_set_of_images_too_small_for_the_size_is_refused_before_any_work(tmp_path,
                                                                                capsys):
    data = write_dataset(tmp_path / "data")  # 32x32 images
    out = tmp_path / "run"
    assert main(["train", "--profile", "paper", "--data", str(data), "--out", str(out),
                 "--batch-size", "4"]) == 2
    assert capsys.readouterr().err == (
        f"error: {data / 'photos'}: every image is too small for image_size 256 (each needs at "
        "least 128 pixels on its short side; the largest is 32x32): lower image_size "
        "(--image-size) to 64 or less, or add larger images\n")
    assert not out.exists()
    write_dataset(tmp_path / "data", size=40, counts={"cartoons": 1})  # one large enough
    with pytest.raises(ValueError, match="photos: every image"):
        data_module.check_image_sizes(data, ("cartoons", "photos"), 80)
    data_module.check_image_sizes(data, ("cartoons",), 80)
    data_module.check_image_sizes(data, ("photos",), 64)  # 32 pixels: the least for 64


def test_out_that_is_a_file_is_refused(tmp_path, capsys):
    data = write_dataset(tmp_path / "data")
    (tmp_path / "taken").write_text("mine")
    assert main(["train", "--profile", "smoke", "--data", str(data), "--out",
                 str(tmp_path / "taken")]) == 2
    assert "taken is a file" in capsys.readouterr().err
    assert (tmp_path / "taken").read_text() == "mine"


def test_missing_data_or_empty_domain_fails_before_any_work(tmp_path):
    config = smoke(tmp_path)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        trainer(dataclasses.replace(config, data=str(tmp_path / "nowhere")))
    for image in (tmp_path / "data" / "cartoons").iterdir():
        image.unlink()
    with pytest.raises(FileNotFoundError, match="cartoons"):
        trainer(config)
    assert not (tmp_path / "run").exists()


def test_full_disk_while_checkpointing_is_one_line_and_keeps_the_last_checkpoint(
        tmp_path, capsys, monkeypatch):
    import errno

    from cglib import files

    data = write_dataset(tmp_path / "data")
    args = ["train", "--profile", "smoke", "--data", str(data), "--out", str(tmp_path / "run"),
            "--image-size", "32"]
    write = files.atomic_write
    calls = []

    def fills_up(path, mode="wb", durable=True):
        if Path(path).name.startswith("checkpoint-"):
            calls.append(path)
            if len(calls) == 2:
                raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return write(path, mode, durable)

    monkeypatch.setattr(files, "atomic_write", fills_up)
    assert main(args) == 2
    error = capsys.readouterr().err
    assert "Traceback" not in error and "no space left on the device" in error
    kept = checkpoints.list_checkpoints(tmp_path / "run" / "checkpoints")
    assert [p.name for p in kept] == ["checkpoint-00000002.pt"]
    torch.load(kept[0], weights_only=True)


# -- faults ---------------------------------------------------------------------------------------


def test_bad_image_in_the_middle_does_not_stop_training(tmp_path):
    config = smoke(tmp_path, in_memory=False)
    run = trainer(config)
    (tmp_path / "data" / "photos" / "002.png").write_bytes(b"this is not a png")
    with pytest.warns(UserWarning, match="002.png"):
        run.fit(progress_bar=False)
    assert run.done


def test_non_finite_losses_are_skipped_then_stop_without_bad_weights(tmp_path, monkeypatch):
    run = trainer(smoke(tmp_path, max_nonfinite=1))
    before = {k: v.clone() for k, v in run.networks.generator.state_dict().items()}

    def broken(photos, generated):
        return generated.mean() * float("nan"), torch.tensor(float("nan"))

    monkeypatch.setattr(run.networks.content, "forward", broken)
    with pytest.warns(RuntimeWarning, match="step 0: the content loss is not finite"), \
            pytest.raises(steps.NonFiniteLossError, match="NaN or infinite"):
        run.fit(progress_bar=False)
    assert run.updater.nonfinite == 2
    after = run.networks.generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # no step was taken


def test_checkpoint_with_non_finite_weights_is_never_written(tmp_path):
    run = trainer(smoke(tmp_path))
    with torch.no_grad():
        next(run.networks.generator.parameters()).fill_(float("inf"))
    with pytest.raises(ValueError, match="NaN or infinite"):
        run.save_checkpoint()
    assert checkpoints.list_checkpoints(run.folder.checkpoints) == []


def test_command_line_trains_and_resumes(tmp_path, capsys):
    data = write_dataset(tmp_path / "data")
    args = ["train", "--profile", "smoke", "--data", str(data), "--out", str(tmp_path / "run"),
            "--image-size", "32", "--vgg-weights", "random"]
    assert main(args) == 0
    assert main([*args, "--resume"]) == 0
    printed = capsys.readouterr().out
    assert "resuming from" in printed and (tmp_path / "run" / "generator.pt").is_file()
    assert "precision" in printed


def test_the_initialization_phase_keeps_its_generator_even_when_nothing_follows(tmp_path):
    run = trainer(smoke(tmp_path, epochs=0, decay_epochs=0))  # notebook 04: this phase only
    run.fit(progress_bar=False)
    kept = pretrained.load_generator(run.folder.path / "generator-init.pt").state_dict()
    assert run.done and all(torch.equal(v, kept[k])
                            for k, v in run.networks.generator.state_dict().items())


def test_a_run_without_initialization_phase_starts_adversarial(tmp_path):
    run = trainer(smoke(tmp_path, init_epochs=0, init_decay_epochs=0))
    assert run.progress.phase == "adversarial"
    run.fit(progress_bar=False)
    metrics = runs.read_run(run.folder.path).metrics
    assert run.done and {r["phase"] for r in metrics} == {"adversarial"}


def test_initial_generator_is_where_the_trainer_starts(tmp_path):
    config = smoke(tmp_path)
    run = trainer(config)
    fresh = train.initial_generator(config).state_dict()
    assert all(torch.equal(v, fresh[k]) for k, v in run.networks.generator.state_dict().items())


def plain_update(optimizer, loss, name):
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


@pytest.mark.parametrize("phase", PHASES, ids=lambda phase: phase.name)
def test_the_trainers_step_is_the_papers_step_called_directly(tmp_path, phase):
    """The trainer's first step equals the step function called with every argument spelled
    out, on networks built the same way, with a plain update (no Updater)."""
    skip_init = {"init_epochs": 0, "init_decay_epochs": 0} if phase.name == "adversarial" else {}
    run = trainer(smoke(tmp_path, precision="fp32", **skip_init))
    by_hand = trainer(smoke(tmp_path, precision="fp32", out=str(tmp_path / "other"),
                            **skip_init))
    batch, n = by_hand.streams.next_batch(phase.domains, {}), by_hand.networks
    optimizers = n.optimizers
    for network in (n.generator, n.discriminator):  # the authors' reset (Updater does it)
        models.zero_conv_biases(network)
    if phase.name == "init":
        values = steps.init_step(n.G, optimizers["generator"], n.content, batch["photos"],
                                 plain_update)
    else:
        values = steps.adversarial_step(n.G, n.D, optimizers, n.pool, n.content,
                                        batch["photos"], batch["cartoons"],
                                        batch["cartoons_smoothed"], plain_update,
                                        kind="lsgan", edge_loss=True)
    run.fit(until_step=1, progress_bar=False)
    assert {k: float(v) for k, v in values.items()} == run.last
    for name in phase.trains:
        mine, theirs = getattr(n, name).state_dict(), getattr(run.networks, name).state_dict()
        assert all(torch.equal(v, theirs[k]) for k, v in mine.items()), name


# -- fine-tuning ----------------------------------------------------------------------------------


def saved_generator(tmp_path, width=8, blocks=1):
    torch.manual_seed(3)
    generator = models.Generator(width, blocks)
    for parameter in generator.parameters():  # not what a fresh generator would hold
        parameter.data.normal_(0, 0.1)
    return generator, pretrained.save_generator(generator, tmp_path / "mine.pt")


def test_init_from_takes_the_files_architecture_and_skips_the_init_phase(tmp_path):
    _, path = saved_generator(tmp_path, width=12, blocks=2)
    config = smoke(tmp_path, init_from=str(path))
    assert (config.generator_width, config.residual_blocks, config.norm) == (12, 2, "instance")
    assert (config.init_epochs, config.init_decay_epochs) == (0, 0)
    assert smoke(tmp_path, init_from=str(path), init_epochs=1).init_epochs == 1
    with pytest.raises(ValueError, match=r"drop generator_width=16 \(the file has 12\)"):
        smoke(tmp_path, init_from=str(path), generator_width=16)
    released = preset("paper", init_from="hosoda")  # a style: no file needed to plan
    assert (released.generator_width, released.residual_blocks) == (64, 8)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        smoke(tmp_path, init_from=str(tmp_path / "missing.pt"))


def test_fine_tuning_starts_from_the_file_with_a_fresh_discriminator(tmp_path):
    generator, path = saved_generator(tmp_path)
    config = smoke(tmp_path, init_from=str(path))
    run = trainer(config)
    assert run.progress.phase == "adversarial"
    for key, value in generator.state_dict().items():
        assert torch.equal(run.networks.generator.state_dict()[key], value), key
    first = next(p for n, p in run.networks.discriminator.named_parameters() if "weight" in n)
    assert float(first.detach().std()) == pytest.approx(0.02, rel=0.25)  # fresh: N(0, 0.02)
    run.fit(progress_bar=False)
    tuned = pretrained.load_generator(Path(config.out) / "generator.pt").state_dict()
    assert any(not torch.equal(tuned[k], v) for k, v in generator.state_dict().items())
    mismatched = dataclasses.replace(config, generator_width=16, out=str(tmp_path / "other"))
    with pytest.raises(ValueError, match="fixes the generator's architecture"):
        train.initial_generator(mismatched)


def test_reference_style_is_checked_and_measured(tmp_path):
    with pytest.raises(ValueError, match="reference_style='picasso'"):
        smoke(tmp_path, reference_style="picasso")
    if not pretrained.weights_available("hayao"):
        pytest.skip("the released hayao weights are not in CGLIB_WEIGHTS_DIR: the measure "
                    "against them cannot run here")
    run = trainer(smoke(tmp_path, reference_style="hayao"))
    expected = pretrained.render_cartoons(run.samples.photos, "hayao")
    assert all((a == b).all() for a, b in zip(run.samples.references, expected, strict=True))
    run.fit(progress_bar=False)
    assert "psnr_to_reference" in runs.read_run(run.folder.path).epochs[-1].measures


def test_init_from_a_plain_state_dict_of_cglibs_generator(tmp_path):
    generator, _ = saved_generator(tmp_path, width=12, blocks=2)
    torch.save(generator.state_dict(), tmp_path / "plain.pt")
    config = smoke(tmp_path, init_from=str(tmp_path / "plain.pt"))
    assert (config.generator_width, config.residual_blocks) == (12, 2)
    started = train.initial_generator(config).state_dict()
    assert all(torch.equal(started[k], v) for k, v in generator.state_dict().items())
