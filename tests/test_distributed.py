"""Training on several processes with torchrun (gloo on the CPU): the same weights as one
process with the same global batch, exact resumption after a kill, one writer, and a clear end
when a process dies."""

import json
import os
import signal
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest
import torch
from conftest import write_dataset

from cglib import checkpoints, distributed, models, pretrained, runs

SETTINGS = ["--profile", "smoke", "--image-size", "32", "--batch-size", "4", "--precision",
            "fp32", "--steps-per-epoch", "3", "--log-every", "1"]


def command(data: Path, out: Path, processes: int, *extra: str) -> list[str]:
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
                 f"--nproc_per_node={processes}"] if processes > 1 else [sys.executable])
    return [*launcher, "-m", "cglib", "train", *SETTINGS, "--data", str(data), "--out",
            str(out), *extra]


def environment() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def train(data: Path, out: Path, processes: int, *extra: str) -> subprocess.CompletedProcess:
    return subprocess.run(command(data, out, processes, *extra), env=environment(),
                          capture_output=True, text=True, timeout=600)


def weights(out: Path) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoints.list_checkpoints(out / "checkpoints")[-1],
                       weights_only=True)["models"]
    return {f"{name}.{key}": value for name, model in state.items()
            for key, value in model.items()}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return write_dataset(tmp_path_factory.mktemp("ddp") / "data", counts={
        "photos": 12, "photos_test": 2, "cartoons": 12, "cartoons_smoothed": 12})


@pytest.fixture(scope="module")
def two_processes(dataset, tmp_path_factory):
    """An uninterrupted run on two processes, pool on: 9 steps. What each process prints goes
    to ``logs/.../<rank>/stdout.log`` beside the run folder (torchrun's --redirects)."""
    out = tmp_path_factory.mktemp("two") / "run"
    launched = command(dataset, out, 2)
    at = launched.index("--standalone") + 1
    launched[at:at] = ["--redirects", "1", "--log-dir", str(out.parent / "logs")]
    finished = subprocess.run(launched, env=environment(), capture_output=True, text=True,
                              timeout=600)
    assert finished.returncode == 0, finished.stderr
    return out


def test_only_the_first_process_prints(two_processes):
    printed = {int(log.parent.name): log.read_text()
               for log in (two_processes.parent / "logs").rglob("stdout.log")}
    assert sorted(printed) == [0, 1]
    assert "training on cpu (2 processes)" in printed[0] and "9 steps in" in printed[0]
    assert printed[1] == ""


def test_replicas_use_the_settings_torch_names_now(tmp_path):
    """DDP is set up without deprecated arguments (each would print a FutureWarning on every
    process of every job) and without a buffer broadcast at every forward."""
    torch.distributed.init_process_group("gloo", init_method=f"file://{tmp_path / 'store'}",
                                         rank=0, world_size=1)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", FutureWarning)
            replica = distributed.replicate(models.Discriminator(8),
                                            distributed.Context(0, 2, torch.device("cpu")))
        assert replica.broadcast_buffers is False
    finally:
        torch.distributed.destroy_process_group()


def test_two_processes_of_batch_2_equal_one_process_of_batch_4(dataset, tmp_path):
    """One initialization step and one adversarial step, the pool off, so that only the
    data-parallel arithmetic can differ: DDP's averaged gradients equal those of the whole
    batch up to float rounding. Nearly every weight (biases aside) then agrees within 1e-6,
    and both networks compute the same functions within 1e-3 (a tenth of a grey level).

    Not every weight: where a gradient is zero but for rounding (the biases that feed a
    normalization, which cancels them, and a handful of others), Adam's first steps turn the
    noise into a step of about the learning rate, whichever way the batch is split (one
    process summing the gradients of two halves does the same: measured 2e-5 on a few weights
    after two steps). Over more steps such differences grow in any GAN training, so the
    comparison stops after two."""
    short = ["--pool-size", "0", "--steps-per-epoch", "1", "--epochs", "1", "--decay-epochs",
             "0", "--log-every", "1"]
    one = train(dataset, tmp_path / "one", 1, *short)
    two = train(dataset, tmp_path / "two", 2, *short)
    assert one.returncode == 0 and two.returncode == 0, one.stderr + two.stderr
    first, second = weights(tmp_path / "one"), weights(tmp_path / "two")
    differences = torch.cat([(first[key] - second[key]).abs().flatten() for key in first
                             if not key.endswith(".bias")])
    assert (differences <= 1e-6).float().mean() >= 0.999
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    for name, network in (("generator", models.Generator(8, 1)),
                          ("discriminator", models.Discriminator(8))):
        outputs = []
        for run in ("one", "two"):
            network.load_state_dict({key.split(".", 1)[1]: value for key, value in
                                     weights(tmp_path / run).items()
                                     if key.startswith(f"{name}.")})
            models.zero_conv_biases(network)  # as before every step
            with torch.no_grad():
                outputs.append(network.eval()(x))
        assert (outputs[0] - outputs[1]).abs().max() <= 1e-3, name  # 0.13 grey levels


def test_only_the_first_process_writes(dataset, two_processes, tmp_path):
    alone = tmp_path / "alone"
    assert train(dataset, alone, 1).returncode == 0
    files = sorted(p.relative_to(two_processes).as_posix() for p in two_processes.rglob("*"))
    assert files == sorted(p.relative_to(alone).as_posix() for p in alone.rglob("*"))
    steps = [line["step"] for line in runs.read_lines(two_processes / "metrics.jsonl")[0]]
    assert steps == list(range(1, 10))  # each step once: one writer
    assert json.loads((two_processes / "config.json").read_text())["batch_size"] == 4


def test_a_killed_job_resumed_on_two_processes_ends_as_if_never_stopped(dataset, two_processes,
                                                                        tmp_path):
    out = tmp_path / "killed"
    job = subprocess.Popen(command(dataset, out, 2, "--steps-per-epoch", "3",
                                   "--checkpoint-every", "1"), env=environment(),
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    deadline = time.time() + 300
    while not checkpoints.list_checkpoints(out / "checkpoints"):
        assert time.time() < deadline and job.poll() is None
        time.sleep(0.05)
    os.killpg(job.pid, signal.SIGKILL)
    job.wait()
    stopped = torch.load(checkpoints.list_checkpoints(out / "checkpoints")[-1],
                         weights_only=True)["progress"]["step"]
    assert stopped < 9, "the job finished before it could be killed"
    resumed = train(dataset, out, 2, "--resume", "--checkpoint-every", "1")
    assert resumed.returncode == 0, resumed.stderr
    a, b = weights(two_processes), weights(out)
    assert all(torch.equal(a[key], b[key]) for key in a)
    generator = pretrained.load_generator(out / "generator.pt")
    assert generator.config["width"] == 8


def test_a_process_that_dies_stops_the_job_with_a_clear_message(dataset, tmp_path):
    out = tmp_path / "run"
    job = subprocess.Popen(command(dataset, out, 2, "--steps-per-epoch", "200",
                                   "--checkpoint-every", "2"), env=environment(),
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           start_new_session=True)
    deadline = time.time() + 300
    while not checkpoints.list_checkpoints(out / "checkpoints"):
        assert time.time() < deadline and job.poll() is None, job.communicate()[0]
        time.sleep(0.05)
    os.kill(_worker(job.pid, rank=1), signal.SIGKILL)
    output, _ = job.communicate(timeout=300)
    assert job.returncode != 0
    assert "process 0 of 2 lost the others" in output and "--resume" in output
    assert checkpoints.load_latest(out / "checkpoints") is not None  # intact


def _worker(agent: int, rank: int) -> int:
    """The process id of torchrun's worker of ``rank`` (a child of the agent ``agent``)."""
    for child in Path(f"/proc/{agent}/task/{agent}/children").read_text().split():
        environ = Path(f"/proc/{child}/environ").read_bytes().split(b"\0")
        if f"RANK={rank}".encode() in environ:
            return int(child)
    raise AssertionError(f"no worker of rank {rank} under process {agent}")
