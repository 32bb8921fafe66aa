"""The notebook harness: profile resolution, device, seeding, paths."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from cglib import env


def test_explicit_profile_wins_over_environment(monkeypatch):
    monkeypatch.setenv("CGLIB_PROFILE", "smoke")
    assert env.resolve_profile("paper") == ("paper", "set by the PROFILE parameter")


def test_auto_profile_reads_environment(monkeypatch):
    monkeypatch.setenv("CGLIB_PROFILE", "smoke")
    profile, reason = env.resolve_profile("auto")
    assert profile == "smoke" and "CGLIB_PROFILE" in reason


def test_auto_profile_without_environment_follows_the_device(monkeypatch):
    monkeypatch.delenv("CGLIB_PROFILE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert env.resolve_profile("auto")[0] == "demo"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert env.resolve_profile("auto")[0] == "paper"


@pytest.mark.parametrize("bad", ["fast", "Smoke", ""])
def test_unknown_profile_is_an_error(bad):
    with pytest.raises(ValueError, match="not a profile"):
        env.resolve_profile(bad)


def test_bad_environment_profile_names_the_variable(monkeypatch):
    monkeypatch.setenv("CGLIB_PROFILE", "quick")
    with pytest.raises(ValueError, match="CGLIB_PROFILE"):
        env.resolve_profile()


def test_bf16_needs_compute_capability_8_or_native_cpu_instructions(monkeypatch):
    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: False)
    assert not env.bf16_capable(torch.device("cpu"))
    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: True)
    assert env.bf16_capable(torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    assert not env.bf16_capable(torch.device("cuda"))
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    assert env.bf16_capable(torch.device("cuda"))


def test_cuda_asked_for_without_gpu_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="no CUDA GPU"):
        env.pick_device("cuda")
    assert env.pick_device("cpu") == torch.device("cpu")


def test_seeding_repeats_every_generator():
    env.seed_everything(7)
    first = (np.random.rand(), torch.rand(1).item())
    env.seed_everything(7)
    assert (np.random.rand(), torch.rand(1).item()) == first


def test_paths_are_absolute_and_independent_of_working_directory(monkeypatch, tmp_path):
    monkeypatch.delenv("CGLIB_HOME", raising=False)
    monkeypatch.delenv("CGLIB_DATA_DIR", raising=False)
    here = env.paths()
    monkeypatch.chdir(tmp_path)
    assert env.paths() == here
    assert here.data.is_absolute() and here.runs.is_absolute()
    assert here.notebooks == Path(env.__file__).resolve().parent.parent / "notebooks"


def test_paths_follow_environment_variables(monkeypatch, tmp_path):
    monkeypatch.delenv("CGLIB_DATA_DIR", raising=False)
    monkeypatch.delenv("CGLIB_RUNS_DIR", raising=False)
    monkeypatch.setenv("CGLIB_HOME", str(tmp_path))
    monkeypatch.setenv("CGLIB_WEIGHTS_DIR", str(tmp_path / "w"))
    found = env.paths()
    assert found.data == tmp_path / "data" and found.runs == tmp_path / "runs"
    assert found.weights == tmp_path / "w"


def test_setup_reports_profile_and_reason(monkeypatch, capsys):
    monkeypatch.setenv("CGLIB_PROFILE", "smoke")
    result = env.setup(seed=3, device="cpu")
    printed = capsys.readouterr().out
    assert result.profile == "smoke" and result.device == torch.device("cpu")
    assert "smoke" in printed and "CGLIB_PROFILE" in printed


def test_colab_cell_does_nothing_outside_colab():
    namespace: dict = {}
    exec(env.colab_cell(), namespace)  # must not install anything here
    assert env.REPOSITORY_URL in env.colab_cell()


def test_native_bf16_is_read_from_the_cpu_flags():
    try:
        flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    except (OSError, StopIteration):
        pytest.skip("no /proc/cpuinfo flags on this system: the detection answers False there")
    assert env.cpu_has_native_bf16() == bool({"avx512_bf16", "amx_bf16"} & set(flags))


def test_autocast_contexts():
    with env.autocast(torch.device("cpu"), "bf16"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with env.autocast(torch.device("cpu"), "fp32"):
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.float32
    with pytest.raises(ValueError, match="precision='fp8'"):
        env.autocast(torch.device("cpu"), "fp8")


def test_inference_precision_auto_is_bf16_on_cpus_with_native_bf16_and_fp32_elsewhere(
        monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: True)
    assert env.inference_precision("auto", cpu) == "bf16"
    assert env.inference_precision("auto", cuda) == "fp32"
    monkeypatch.setattr(env, "cpu_has_native_bf16", lambda: False)
    assert env.inference_precision("auto", cpu) == "fp32"
    assert env.inference_precision("fp16", cpu) == "fp16"
    with pytest.raises(ValueError, match="precision='fp8'"):
        env.inference_precision("fp8", cpu)


def test_a_papermill_parameter_of_the_wrong_type_is_named_with_its_type(tmp_path):
    """A real papermill run of a small notebook: each parameter given with another type than
    its default is named with the type it takes (an int may stand for a float; a default of
    None takes anything)."""
    nbformat = pytest.importorskip("nbformat")
    pytest.importorskip("papermill")
    book = nbformat.v4.new_notebook(metadata={
        "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    parameters = nbformat.v4.new_code_cell('PROFILE = "auto"\nSEED = 0\nEPOCHS = 3\nLR = 0.5\n'
                                           'NAME = "x"\nFLIP = True\nEXTRA = None')
    parameters.metadata["tags"] = ["parameters"]
    book.cells = [parameters, nbformat.v4.new_code_cell("from cglib import env\n"
                                                        "env.setup(PROFILE, SEED)")]
    nbformat.write(book, tmp_path / "book.ipynb")
    given = ["-p", "EPOCHS", "abc", "-p", "LR", "1", "-p", "NAME", "y", "-p", "FLIP", "1",
             "-p", "EXTRA", "5"]
    result = subprocess.run(
        [sys.executable, "-m", "papermill", str(tmp_path / "book.ipynb"),
         str(tmp_path / "out.ipynb"), *given, "--cwd", str(tmp_path)],
        capture_output=True, text=True)
    printed = result.stdout + result.stderr
    assert result.returncode != 0
    assert ("parameter EPOCHS is 'abc' (str), but this notebook's EPOCHS is int (its default: "
            "3); give one like -p EPOCHS 3; parameter FLIP is 1 (int), but this notebook's FLIP "
            "is bool (its default: True); give one like -p FLIP True") in printed
    assert "parameter LR" not in printed and "parameter NAME" not in printed
    assert "parameter EXTRA" not in printed


@pytest.fixture
def notebook_shell():
    """An IPython shell for the test, whose displayed outputs (data and metadata) are kept."""
    from IPython.core.interactiveshell import InteractiveShell
    from IPython.utils.capture import capture_output
    from traitlets.config import Config

    quiet = Config()
    quiet.HistoryManager.enabled = False  # no history file in the test run's temporary home
    InteractiveShell.instance(config=quiet)  # get_ipython() returns it from now on
    try:
        with capture_output() as captured:
            yield captured
    finally:
        InteractiveShell.clear_instance()


def test_a_degraded_part_is_said_with_metadata_the_series_reads(notebook_shell):
    env.note_degraded("content network", "random VGG19 filters")
    env.state_budget("demo", {"smoke": 20, "demo": 240}, "600 steps")
    (degraded, budget) = notebook_shell.outputs
    assert degraded.data == {"text/plain": "degraded: content network: random VGG19 filters"}
    assert degraded.metadata == {env.DEGRADED_KEY: {"what": "content network",
                                                    "why": "random VGG19 filters"}}
    assert budget.data == {"text/plain": "Budget (demo): about 4 minutes on a 2-core CPU; "
                                         "600 steps."}
    assert budget.metadata == {env.BUDGET_KEY: {"profile": "demo", "seconds": 240.0}}


def test_outside_a_notebook_the_budget_is_printed_and_a_note_left_to_the_caller(capsys):
    env.note_degraded("content network", "random VGG19 filters")
    env.state_budget("paper", {"paper": 8 * 86400}, "8 trainings")
    assert capsys.readouterr().out == "Budget (paper): about 8 days on one GPU; 8 trainings.\n"


@pytest.mark.parametrize("seconds, words", [(3, "about 5 seconds"), (42, "about 40 seconds"),
                                            (60, "about a minute"), (236, "about 4 minutes"),
                                            (1680, "about 28 minutes"), (7200, "about 2 hours"),
                                            (86400 * 3, "about 3 days")])
def test_durations_in_words(seconds, words):
    assert env.in_words(seconds) == words
