"""Training checkpoints that survive a disconnect: atomic writes, rotation, and a fallback when
the newest file is damaged.

A checkpoint is a plain dict of tensors, numbers, strings, lists and dicts, so it loads with
``torch.load(path, weights_only=True)``: nothing in it can run code when it is opened.
"""

from __future__ import annotations

import contextlib
import random
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch

from cglib import files

NAME = re.compile(r"^checkpoint-(\d{8})\.pt$")

#: The ``format`` field of every checkpoint (:meth:`cglib.train.Trainer.state_dict`).
FORMAT = "cglib-checkpoint"


def checkpoint_path(folder: Path, step: int) -> Path:
    return folder / f"checkpoint-{step:08d}.pt"


def list_checkpoints(folder: Path) -> list[Path]:
    """Checkpoints in ``folder``, oldest first."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if NAME.match(p.name))


def save_checkpoint(state: dict, folder: Path, step: int, keep: int) -> Path:
    """Write ``state`` as ``checkpoint-<step>.pt`` atomically and keep only the newest ``keep``.

    Refuses (ValueError) to write a state holding a non-finite floating tensor under
    ``models``: a checkpoint must never carry NaN or infinite weights.
    """
    for model_name, weights in state.get("models", {}).items():
        for key, tensor in weights.items():
            if tensor.is_floating_point() and not torch.isfinite(tensor).all():
                raise ValueError(
                    f"not writing checkpoint {step}: {model_name}.{key} holds NaN or infinite "
                    "values; the previous checkpoint is intact"
                )
    path = checkpoint_path(folder, step)
    with files.atomic_write(path) as file:
        torch.save(state, file)
    for old in list_checkpoints(folder)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def load_latest(folder: Path) -> tuple[dict, Path] | None:
    """The newest checkpoint in ``folder`` that loads, with its path; None when there is none.

    A damaged file (truncated on disk, say), or one that holds something else than a training
    checkpoint (a list, say), is skipped with a warning naming it, and the one before it is
    used.
    """
    for path in reversed(list_checkpoints(folder)):
        try:
            return _checked(torch.load(path, map_location="cpu", weights_only=True)), path
        except Exception as error:  # any unreadable file: fall back to the one before
            warnings.warn(
                f"checkpoint {path} cannot be read ({type(error).__name__}: {error}); "
                "falling back to the previous one",
                stacklevel=2,
            )
    return None


def _checked(state: object) -> dict:
    """``state`` if it has the outline of a training checkpoint (a dict of the :data:`FORMAT`,
    with its config, progress and models); ValueError saying what it holds otherwise."""
    if not isinstance(state, dict):
        raise ValueError(f"it holds a {type(state).__name__}, not a training checkpoint")
    if state.get("format") != FORMAT or not all(
            isinstance(state.get(key), dict) for key in ("config", "progress", "models")):
        raise ValueError(f"it is not a {FORMAT} file")
    return state


@contextlib.contextmanager
def restoring(path: Path) -> Iterator[None]:
    """Around restoring a run from the checkpoint ``path``: a state that does not fit the run
    (tensors of other shapes, entries missing) raises ValueError naming the file and the fix."""
    try:
        yield
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        detail = (f"no entry {error.args[0]!r}" if isinstance(error, KeyError)
                  else " ".join(str(error).split()))
        raise ValueError(f"checkpoint {path} does not fit the run it continues ({detail}); "
                         f"move it out of {path.parent} to resume from the one before it")\
            from None


def rng_state() -> dict:
    """Every random generator's state, in types that ``weights_only`` loading accepts."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "position": int(position),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore what :func:`rng_state` captured."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    numpy_state = state["numpy"]
    np.random.set_state(("MT19937", numpy_state["keys"].numpy().astype(np.uint32),
                         numpy_state["position"], numpy_state["has_gauss"],
                         numpy_state["gauss"]))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
