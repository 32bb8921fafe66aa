"""Where a notebook or command runs: profile, device, precision, seeding, paths and Colab.

This is the bottom of the house: it imports nothing of cglib. Every notebook calls
:func:`setup` right after its ``parameters`` cell, so that the same notebook runs in CI (profile
``smoke``), on a laptop (``demo``) and on a GPU (``paper``) without edits, from any working
directory.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import random
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

#: The one place that names the project's repository. The Colab cell of every notebook and the
#: "Open in Colab" badges are generated from it (``python -m cglib notebooks --sync``).
REPOSITORY = "cglib-tutorial/cglib"
REPOSITORY_URL = f"https://github.com/{REPOSITORY}"
BRANCH = "main"

PROFILES = ("smoke", "demo", "paper")
PROFILE_HELP = {
    "smoke": "CI check: CPU, seconds, tiny sizes; proves the code path, learns nothing",
    "demo": "CPU-friendly minutes on the project's own demo data; small but real runs",
    "paper": "the authors' settings on a GPU and your own data; hours",
}


def on_colab() -> bool:
    """True inside a Google Colab runtime."""
    return "google.colab" in sys.modules


def resolve_profile(requested: str = "auto") -> tuple[str, str]:
    """Pick the run profile and say why.

    ``requested`` is what the notebook's ``PROFILE`` parameter holds: one of :data:`PROFILES`
    (papermill's ``-p PROFILE ...`` or an edit), or ``"auto"``: then the environment variable
    ``CGLIB_PROFILE`` decides if set (CI and ``make test`` set ``smoke``), else ``paper`` where a
    CUDA GPU is present and ``demo`` elsewhere. Returns ``(profile, reason)``.
    """
    if requested != "auto":
        if requested not in PROFILES:
            raise ValueError(
                f"PROFILE={requested!r} is not a profile; use one of {', '.join(PROFILES)} "
                "or 'auto'"
            )
        return requested, "set by the PROFILE parameter"
    from_env = os.environ.get("CGLIB_PROFILE", "").strip()
    if from_env:
        if from_env not in PROFILES:
            raise ValueError(
                f"the environment variable CGLIB_PROFILE={from_env!r} is not a profile; "
                f"set it to one of {', '.join(PROFILES)} or unset it"
            )
        return from_env, "from the environment variable CGLIB_PROFILE"
    if torch.cuda.is_available():
        return "paper", "a CUDA GPU is present and CGLIB_PROFILE is unset"
    return "demo", "no CUDA GPU and CGLIB_PROFILE is unset"


def pick_device(preference: str = "auto") -> torch.device:
    """CUDA if present, else Apple MPS, else CPU; or exactly ``preference`` if not ``"auto"``."""
    if preference != "auto":
        device = torch.device(preference)
        if device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device {preference!r} was asked for, but no CUDA GPU is visible")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def bf16_capable(device: torch.device) -> bool:
    """True where bf16 autocast is fast: a CUDA GPU of compute capability 8.0 (Ampere) or
    higher, or a CPU with native bf16 instructions (:func:`cpu_has_native_bf16`).

    ``torch.cuda.is_bf16_supported()`` also says yes on older GPUs that emulate bf16 slowly,
    so the compute capability is what decides here.
    """
    if device.type == "cpu":
        return cpu_has_native_bf16()
    if device.type != "cuda":
        return False
    return torch.cuda.get_device_capability(device) >= (8, 0)


@functools.cache
def cpu_has_native_bf16() -> bool:
    """True when this CPU computes bf16 natively (the ``avx512_bf16`` or ``amx_bf16`` flag in
    ``/proc/cpuinfo``): there bf16 convolutions run about twice as fast as fp32. Without the
    instructions, bf16 is emulated and slower than fp32; where the flags cannot be read (not
    Linux), False."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as file:
            flags = next((line for line in file if line.startswith("flags")), "")
    except OSError:
        return False
    return bool({"avx512_bf16", "amx_bf16"} & set(flags.split()))


#: Numeric precisions: ``fp32``, or mixed precision (autocast) in ``bf16`` or ``fp16``;
#: ``auto`` lets the caller pick for the device.
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """The context that runs a block in ``precision`` (``"fp32"``, ``"bf16"`` or ``"fp16"``) on
    ``device``: nothing for fp32, else ``torch.autocast`` with that dtype."""
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision not in _AUTOCAST_DTYPES:
        choices = ", ".join(p for p in PRECISIONS if p != "auto")
        raise ValueError(f"precision={precision!r} is not one of {choices}")
    return torch.autocast(device.type, dtype=_AUTOCAST_DTYPES[precision])


def training_precision(requested: str, device: torch.device,
                       agrees: Callable[[], bool] | None = None) -> tuple[str, str]:
    """The precision a run trains in, and why. ``requested``: one of :data:`PRECISIONS`.
    ``auto``: bf16 on CUDA GPUs of compute capability 8.0 or more, fp16 (with a gradient
    scaler) on older ones such as the T4; on a CPU with native bf16, bf16 when ``agrees()``
    (a few steps in bf16 stay finite and close to fp32, :func:`cglib.steps.bf16_agrees`), else
    fp32; fp32 elsewhere."""
    if requested != "auto":
        if requested == "fp16" and device.type != "cuda":
            raise ValueError(f"precision='fp16' needs a CUDA GPU; this run is on {device}; use "
                             "'bf16', 'fp32' or 'auto'")
        return requested, "asked for"
    if device.type == "cuda":
        return ("bf16", "GPU of compute capability 8.0 or more") if bf16_capable(device) \
            else ("fp16", "GPU older than compute capability 8.0")
    if device.type == "cpu" and cpu_has_native_bf16():
        if agrees is None or agrees():
            return "bf16", "CPU with native bf16; a check kept the losses close to fp32"
        return "fp32", "CPU with native bf16, but a check found bf16 losses off; fp32"
    return "fp32", f"no fast bf16 on {device}"


def inference_precision(requested: str, device: torch.device) -> str:
    """``fp32``, ``bf16`` or ``fp16`` for inference on ``device``. ``auto`` gives bf16 on a CPU
    with native bf16 instructions (about twice as fast, 55 dB from fp32 on the reference
    photos) and fp32 elsewhere, CUDA included; other values are taken as they are."""
    if requested not in PRECISIONS:
        raise ValueError(f"precision={requested!r} is not one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    if device.type == "cpu" and cpu_has_native_bf16():
        return "bf16"
    return "fp32"


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators (all devices) with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _checkout_root() -> Path | None:
    """The repository root when cglib runs from a checkout (editable install), else None."""
    root = Path(__file__).resolve().parent.parent
    if (root / "pyproject.toml").is_file() and (root / "notebooks").is_dir():
        return root
    return None


@dataclass(frozen=True)
class Paths:
    """Folders, all absolute and independent of the working directory.

    ``home``: ``CGLIB_HOME`` if set, else the checkout when cglib runs from one, else
    ``~/cglib``. ``data`` and ``runs`` default to ``home/data`` and ``home/runs`` and can be
    moved alone with ``CGLIB_DATA_DIR`` and ``CGLIB_RUNS_DIR``. ``weights``: where official
    generator weights are looked for and downloaded to, ``CGLIB_WEIGHTS_DIR`` if set, else
    ``$XDG_CACHE_HOME/cglib/weights`` (``~/.cache/cglib/weights``). ``cache``: downloads kept
    between runs (archives of public data sets), ``CGLIB_CACHE_DIR`` if set, else
    ``$XDG_CACHE_HOME/cglib``.
    """

    home: Path
    data: Path
    runs: Path
    weights: Path
    cache: Path
    notebooks: Path | None

    @classmethod
    def from_environment(cls) -> Paths:
        checkout = _checkout_root()
        home_env = os.environ.get("CGLIB_HOME")
        if home_env:
            home = Path(home_env).expanduser().resolve()
        else:
            home = checkout if checkout is not None else Path.home() / "cglib"
        cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "cglib"
        return cls(
            home=home,
            data=_dir_from_env("CGLIB_DATA_DIR", home / "data"),
            runs=_dir_from_env("CGLIB_RUNS_DIR", home / "runs"),
            weights=_dir_from_env("CGLIB_WEIGHTS_DIR", cache / "weights"),
            cache=_dir_from_env("CGLIB_CACHE_DIR", cache),
            notebooks=checkout / "notebooks" if checkout is not None else None,
        )


def _dir_from_env(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    return Path(value).expanduser().resolve() if value else default


def paths() -> Paths:
    """The project's folders as the environment sets them now (see :class:`Paths`)."""
    return Paths.from_environment()


def mount_google_drive(folder: str = "cglib") -> Path:
    """On Colab, mount Google Drive and return ``MyDrive/<folder>`` (created); outputs written
    there survive a disconnected runtime. Elsewhere, raise with what to do instead."""
    if not on_colab():
        raise RuntimeError(
            "Google Drive can only be mounted inside Colab; elsewhere set CGLIB_RUNS_DIR "
            "to the folder you want outputs in"
        )
    from google.colab import drive  # type: ignore[import-not-found]

    drive.mount("/content/drive")
    target = Path("/content/drive/MyDrive") / folder
    target.mkdir(parents=True, exist_ok=True)
    return target


@dataclass(frozen=True)
class Setup:
    """What a notebook runs with; printed by :func:`setup`."""

    profile: str
    profile_reason: str
    device: torch.device
    bf16: bool
    seed: int
    paths: Paths

    def run_folder(self, notebook: str) -> Path:
        """Where ``notebook`` (a short name such as ``"04_initialization"``) writes its runs
        in this profile: ``<runs>/<notebook>-<profile>``; a later notebook finds an earlier
        one's results there."""
        return self.paths.runs / f"{notebook}-{self.profile}"

    def describe(self) -> str:
        gpu = ""
        if self.device.type == "cuda":
            name = torch.cuda.get_device_name(self.device)
            major, minor = torch.cuda.get_device_capability(self.device)
            gpu = f" ({name}, compute capability {major}.{minor})"
        return "\n".join(
            [
                f"profile : {self.profile} ({self.profile_reason}): {PROFILE_HELP[self.profile]}",
                f"device  : {self.device}{gpu}; fast bf16: {'yes' if self.bf16 else 'no'}",
                f"seed    : {self.seed}",
                f"data    : {self.paths.data}",
                f"runs    : {self.paths.runs}",
                f"weights : {self.paths.weights}",
            ]
        )


def setup(
    profile: str = "auto", seed: int = 0, device: str = "auto", google_drive: bool = False
) -> Setup:
    """Check the notebook's parameters, resolve the profile, pick the device, seed every
    generator and find the folders.

    A parameter that papermill was given but the notebook's ``parameters`` cell does not
    define (a misspelt ``-p EPOCS 3``), or of another type than its default there
    (``-p EPOCHS abc``), is an error here (:func:`parameter_errors`). ``google_drive=True`` on
    Colab mounts Drive and sends run outputs there (so a disconnect loses nothing); elsewhere
    it is ignored with a note. Prints the result and returns it.
    """
    errors = parameter_errors()
    if errors:
        raise ValueError("; ".join(errors))
    chosen, reason = resolve_profile(profile)
    if google_drive and on_colab():
        os.environ["CGLIB_RUNS_DIR"] = str(mount_google_drive() / "runs")
    elif google_drive:
        print("google_drive=True is ignored outside Colab")
    torch_device = pick_device(device)
    seed_everything(seed)
    result = Setup(chosen, reason, torch_device, bf16_capable(torch_device), seed, paths())
    print(result.describe())
    return result


#: The output metadata keys of :func:`note_degraded` and :func:`state_budget`, read by
#: :mod:`cglib.series` from an executed notebook.
DEGRADED_KEY = "cglib_degraded"
BUDGET_KEY = "cglib_budget"
#: What each profile's budget is measured on.
BUDGET_MACHINE = {"smoke": "a CPU", "demo": "a 2-core CPU", "paper": "one GPU"}


def note_degraded(what: str, why: str) -> None:
    """Say, in a notebook, that ``what`` ran degraded and ``why`` (random VGG filters instead
    of the ImageNet weights, a released style that could not be had): a line ``degraded:
    <what>: <why>`` whose output carries the pair as metadata (:data:`DEGRADED_KEY`), so that
    the series runner marks the notebook degraded and says why on its page and in its index.
    Outside IPython it does nothing: the caller has warned or printed already."""
    _show_in_notebook(f"degraded: {what}: {why}", {DEGRADED_KEY: {"what": what, "why": why}})


def in_words(seconds: float) -> str:
    """A duration as a budget says it: "about 40 seconds", "about a minute", "about 25
    minutes", "about 3 hours", "about 8 days"."""
    if seconds < 50:
        return f"about {max(5, round(seconds / 5) * 5)} seconds"
    if seconds < 90:
        return "about a minute"
    if seconds < 5400:
        return f"about {round(seconds / 60)} minutes"
    if seconds < 2 * 86400:
        return f"about {round(seconds / 3600)} hours"
    return f"about {round(seconds / 86400)} days"


def state_budget(profile: str, seconds: dict[str, float], work: str) -> None:
    """State a notebook's budget in ``profile`` (``seconds``: profile -> the time it should
    take on :data:`BUDGET_MACHINE`), with the ``work`` it does there, written from the run's
    settings: "Budget (demo): about 4 minutes on a 2-core CPU; <work>." In a notebook the
    output carries ``{"profile", "seconds"}`` as metadata (:data:`BUDGET_KEY`) for the series
    runner to compare with the time the notebook took; elsewhere the line is printed."""
    line = (f"Budget ({profile}): {in_words(seconds[profile])} on {BUDGET_MACHINE[profile]}; "
            f"{work}.")
    metadata = {BUDGET_KEY: {"profile": profile, "seconds": float(seconds[profile])}}
    if not _show_in_notebook(line, metadata):
        print(line)


def _show_in_notebook(line: str, metadata: dict) -> bool:
    """Display ``line`` as an output carrying ``metadata``, when running in IPython; returns
    whether it did."""
    try:
        from IPython import get_ipython
        from IPython.display import display
    except ImportError:
        return False
    if get_ipython() is None:
        return False
    display({"text/plain": line}, raw=True, metadata=metadata)
    return True


def parameter_errors() -> list[str]:
    """What is wrong with the parameters papermill injected into the running notebook (its
    "# Parameters" cell, which follows the cell tagged ``parameters``), one line per problem:
    a name that the ``parameters`` cell does not assign, and a value whose type differs from
    the default's there (int, float, str or bool; an int may stand for a float). Empty outside
    papermill. Read from the kernel's history of executed cells (IPython's ``In``)."""
    try:
        from IPython import get_ipython
    except ImportError:
        return []
    shell = get_ipython()
    history = shell.user_ns.get("In", []) if shell is not None else []
    for index in range(len(history) - 1, 0, -1):
        if history[index].startswith("# Parameters\n"):
            return _compare(_assigned(history[index - 1]), _assigned(history[index]))
    return []


_CHECKED_TYPES = (bool, int, float, str)


def _compare(defaults: dict[str, Any], given: dict[str, Any]) -> list[str]:
    """The problems of the ``given`` parameters against the ``parameters`` cell's
    ``defaults`` (see :func:`parameter_errors`)."""
    unknown = sorted(set(given) - set(defaults))
    errors = [f"this notebook has no parameter {', '.join(unknown)}; its parameters are the "
              "names assigned in its cell tagged 'parameters'"] if unknown else []
    for name, value in given.items():
        default = defaults.get(name)
        expected = next((kind for kind in _CHECKED_TYPES if isinstance(default, kind)), None)
        if expected is None or value is _NOT_A_LITERAL:
            continue
        fits = type(value) is expected or (expected is float and type(value) is int)
        if not fits:
            errors.append(f"parameter {name} is {value!r} ({type(value).__name__}), but this "
                          f"notebook's {name} is {expected.__name__} (its default: {default!r})"
                          f"; give one like -p {name} {default!r}")
    return errors


#: What :func:`_assigned` gives for a value that is not a plain literal.
_NOT_A_LITERAL = object()


def _assigned(source: str) -> dict[str, Any]:
    """Names assigned at the top level of a cell's source, with their values when these are
    plain literals (else :data:`_NOT_A_LITERAL`); nothing if it does not parse."""
    import ast

    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    values = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            continue
        try:
            value = ast.literal_eval(node.value)
        except (ValueError, TypeError):
            value = _NOT_A_LITERAL
        values.update({target.id: value for target in node.targets
                       if isinstance(target, ast.Name)})
    return values


def versions() -> dict[str, str]:
    """Versions of Python and the packages cglib uses, for environment reports."""
    import importlib.metadata as metadata

    found = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("torch", "torchvision", "numpy", "opencv-python", "opencv-python-headless",
                 "matplotlib", "ipywidgets", "pillow", "scikit-image", "tqdm", "papermill",
                 "nbval"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    found["cuda"] = torch.version.cuda or "none"
    return found


def colab_badge(notebook: str) -> str:
    """Markdown for the "Open in Colab" badge of ``notebooks/<notebook>``."""
    url = (f"https://colab.research.google.com/github/{REPOSITORY}/blob/{BRANCH}/"
           f"notebooks/{notebook}")
    return f"[![Open In Colab](https://colab.research.google.com/assets/colab-badge.svg)]({url})"


def colab_cell() -> str:
    """Source of every notebook's first code cell: on Colab, install cglib from the repository
    (keeping Colab's own torch); elsewhere do nothing. It cannot import cglib (not installed
    yet on Colab), so it is plain Python; tests keep every notebook's copy equal to this."""
    return (
        "# On Google Colab, install cglib from its repository (keeps Colab's own torch).\n"
        "# Anywhere else this cell does nothing.\n"
        "import subprocess\n"
        "import sys\n"
        "\n"
        "if \"google.colab\" in sys.modules:\n"
        "    subprocess.run([sys.executable, \"-m\", \"pip\", \"install\", \"-q\",\n"
        f"                    \"cglib @ git+{REPOSITORY_URL}@{BRANCH}\"], check=True)"
    )
