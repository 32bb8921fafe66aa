"""The generator as an ONNX graph, for runtimes without PyTorch (onnxruntime and others).

:func:`export_onnx` writes one ONNX file holding the generator followed by a crop to the
input's size (:class:`CroppedGenerator`), so the graph's output has the input's shape for any
H and W. :func:`check_onnx` runs the file with onnxruntime beside the torch generator
and says how close the two are (PSNR); :func:`export_checked` does both and puts the file in
place only when the two agree. What stays in Python around the graph, on both sides, is in
:data:`GRAPH_CONTRACT`. Needs the ``export`` extra: ``pip install "cglib[export]"``
(onnx, onnxscript, onnxruntime).
"""

from __future__ import annotations

import copy
import importlib
import inspect
import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from cglib import files, metrics

#: The graph's input and output, and what a caller does before and after: the command's help
#: and the ONNX file's doc string.
GRAPH_CONTRACT = """\
input  'image':   (N, 3, H, W) float32, RGB (not BGR), in [-1, 1]; N, H and W dynamic,
                  H and W at least 8
output 'cartoon': (N, 3, H, W) float32, RGB, in [-1, 1]: always the input's shape
before: H x W x 3 uint8 RGB pixels -> pixels.transpose(2, 0, 1)[None].astype(np.float32)
        / 127.5 - 1 (stack images of one size for a batch); resize first if you like
        (the authors fed photos with the long side at 450)
after:  round((cartoon[0] + 1) * 127.5), clipped to 0..255, as uint8, transposed back
        to H x W x 3
Sides that are not multiples of 4 run unpadded, as in the authors' network and cglib's
cartoonize. Memory grows with H x W; for very large images use cglib's cartoonize, whose
tiles keep the whole image's instance-norm statistics (tiles cut outside the graph do not)."""

#: Sizes (H, W) that :func:`check_onnx` compares on by default: square, odd, portrait.
CHECK_SIZES = ((256, 256), (301, 450), (512, 384))

#: The least PSNR (dB) between onnxruntime's and torch's outputs that :func:`export_checked`
#: (and ``python -m cglib export``) accepts. float32 rounding alone gives 125 to 140 dB
#: (released and random weights); a crop one pixel off gives under 30.
MIN_PSNR = 50.0

_INPUT, _OUTPUT = "image", "cartoon"
_DIMENSIONS = {0: "batch", 2: "height", 3: "width"}


class CroppedGenerator(nn.Module):
    """``generator`` followed by the crop to the input's top-left H x W: what the graph holds.

    (N, 3, H, W) RGB in [-1, 1] -> (N, 3, H, W) RGB in [-1, 1], for any H, W >= 8 (the
    generator alone returns sides rounded up to a multiple of 4; see
    :meth:`cglib.models.Generator.forward`).
    """

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.generator(image)[:, :, : image.shape[2], : image.shape[3]]


def _cropped_copy(generator: nn.Module) -> CroppedGenerator:
    """A float32 CPU eval-mode copy, cropped: export and check leave the caller's generator
    (device, precision, mode) as it was."""
    return CroppedGenerator(copy.deepcopy(generator).float().cpu()).eval()


def import_extra(*names: str) -> list[ModuleType]:
    """Import the modules ``names``, or raise ImportError saying how to install them."""
    modules = []
    for name in names:
        try:
            modules.append(importlib.import_module(name))
        except ImportError as error:
            raise ImportError(f"ONNX export and checks need the package {name} ({error}); "
                              'install them with: pip install "cglib[export]"') from None
    return modules


def check_target(path: str | os.PathLike, overwrite: bool = False) -> Path:
    """``path`` as the ONNX file to write, checked before any work: its folder is created, and
    an existing file is refused unless ``overwrite`` (:func:`cglib.files.refuse_existing`).

    Raises FileExistsError, IsADirectoryError or NotADirectoryError (a parent is a file), each
    naming the path and the fix.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a folder; give the ONNX file's name, e.g. "
                                f"{path / 'generator.onnx'}")
    files.refuse_existing(path, overwrite)
    files.output_folder(path.parent, "folder for the ONNX file")
    return path


def check_ready(path: str | os.PathLike, overwrite: bool = False, opset: int | None = None
                ) -> Path:
    """What :func:`export_checked` checks before any work, for callers with work of their own
    to do first (a download): ``opset`` (:func:`check_opset`), ``path`` as the target
    (:func:`check_target`), and the export extra's modules that the installed torch's
    exporter and the check need, imported (ImportError saying how to install them). Returns
    ``path``."""
    check_opset(opset)
    path = check_target(path, overwrite)
    import_extra("onnx", *(("onnxscript",) if uses_torch_export() else ()), "onnxruntime")
    return path


def uses_torch_export() -> bool:
    """True where the installed torch's default ONNX exporter is the torch.export-based one.

    torch 2.9 and later default to it (and deprecate the TorchScript exporter); torch 2.5 to
    2.8 offer it as a preview but default to TorchScript; torch 2.1 to 2.4 have only the
    TorchScript exporter. Following torch's own default keeps cglib on each version's best
    supported path.
    """
    parameter = inspect.signature(torch.onnx.export).parameters.get("dynamo")
    return parameter is not None and parameter.default is True


def supported_opsets() -> range:
    """The ONNX operator sets that the installed torch's default exporter writes, from torch's
    own table: 18 up to torch's newest (23 in torch 2.14) for the torch.export-based one, 7 up
    to the TorchScript exporter's newest (20 in torch 2.14) for the other."""
    from torch.onnx import _constants

    if uses_torch_export():
        return range(18, _constants.ONNX_MAX_OPSET + 1)
    newest = getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", _constants.ONNX_MAX_OPSET)
    return range(_constants.ONNX_MIN_OPSET, newest + 1)


def check_opset(opset: int | None) -> None:
    """ValueError naming ``opset`` and the range the exporter writes, unless it is in
    :func:`supported_opsets` (or None: the exporter's default)."""
    supported = supported_opsets()
    if opset is not None and opset not in supported:
        raise ValueError(f"opset={opset}: the ONNX exporter of torch {torch.__version__} writes "
                         f"opsets {supported.start} to {supported.stop - 1}; ask for one of "
                         "them (--opset), or leave it out for torch's default")


def _export_torch_export(model: nn.Module, example: torch.Tensor, opset: int | None):
    """The torch.export-based exporter; returns an onnx ModelProto."""
    batch = torch.export.Dim("batch", min=1)
    height, width = (torch.export.Dim(name, min=8) for name in ("height", "width"))
    program = torch.onnx.export(
        model, (example,), input_names=[_INPUT], output_names=[_OUTPUT], opset_version=opset,
        dynamo=True, dynamic_shapes={_INPUT: {0: batch, 2: height, 3: width}}, verbose=False)
    return program.model_proto


def _export_torchscript(model: nn.Module, example: torch.Tensor, opset: int | None):
    """The TorchScript exporter (tracing; the crop's sizes are traced as shape operations, so
    they follow the input); returns an onnx ModelProto."""
    (onnx,) = import_extra("onnx")
    buffer = io.BytesIO()
    # torch 2.5 to 2.8 take dynamo=False (their default); older versions lack the argument
    legacy = ({"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters
              else {})
    with warnings.catch_warnings():
        # expected, not problems: InstanceNorm2d checks its input's sizes in Python (checks,
        # not graph); instance norm always uses the input's statistics ("train=True"); the
        # crop's ends come from the input's shape, so they cannot be constant-folded
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", ".*operator 'instance_norm' is set to train=True")
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1")
        torch.onnx.export(model, (example,), buffer, input_names=[_INPUT],
                          output_names=[_OUTPUT], opset_version=opset,
                          dynamic_axes={_INPUT: _DIMENSIONS, _OUTPUT: _DIMENSIONS}, **legacy)
    return onnx.load_from_string(buffer.getvalue())


def export_onnx(generator: nn.Module, path: str | os.PathLike, *, opset: int | None = None,
                overwrite: bool = False) -> Path:
    """Write ``generator`` (a :class:`cglib.models.Generator`) to ``path`` as an ONNX graph.

    The graph: input ``image`` (N, 3, H, W) float32 RGB in [-1, 1], output ``cartoon`` of the
    same shape, float32 RGB in [-1, 1], N, H and W dynamic (H, W >= 8); the generator's output
    is cropped to the input's top-left H x W inside the graph. Before: uint8 H x W x 3 RGB
    pixels / 127.5 - 1, channels first; after: (cartoon + 1) * 127.5, rounded and clipped to
    uint8 (see :data:`GRAPH_CONTRACT`). The exporter is the installed torch's default
    (:func:`uses_torch_export`); ``opset``: the ONNX operator set (:func:`supported_opsets`),
    ``None`` for the exporter's default. A float32 CPU copy in eval mode is exported;
    ``generator`` is left as it was. The file is written atomically (:mod:`cglib.files`); an
    existing one is refused unless ``overwrite``. Returns ``path``.
    """
    check_opset(opset)
    path = check_target(path, overwrite)
    if uses_torch_export():
        import_extra("onnx", "onnxscript")
        export = _export_torch_export
    else:
        export = _export_torchscript
    example = torch.rand(2, 3, 64, 64) * 2 - 1  # batch 2: torch.export fixes sizes of 1
    proto = export(_cropped_copy(generator), example, opset)
    # the crop makes the output's sides the input's; the exporter writes them as expressions
    for dimension, name in _DIMENSIONS.items():
        proto.graph.output[0].type.tensor_type.shape.dim[dimension].dim_param = name
    proto.doc_string = GRAPH_CONTRACT
    return files.write_bytes(path, proto.SerializeToString())


def check_onnx(path: str | os.PathLike, generator: nn.Module,
               sizes: Sequence[tuple[int, int]] = CHECK_SIZES, seed: int = 0, *,
               name: str | os.PathLike | None = None) -> list[dict]:
    """Run the ONNX file ``path`` with onnxruntime (CPU) and ``generator`` with torch (float32,
    eval mode, CPU, cropped as in the graph) on the same random (1, 3, H, W) input in [-1, 1]
    for each (H, W) of ``sizes``.

    Returns one dict per size: ``height``, ``width``, ``psnr`` (dB between the two outputs
    mapped to [0, 255], :func:`cglib.metrics.psnr`; inf when equal) and ``max_abs_diff`` (in
    the outputs' [-1, 1] units). Raises ValueError naming the file (``name``, default
    ``path``) when its output's shape is not the input's.
    """
    (onnxruntime,) = import_extra("onnxruntime")
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    model = _cropped_copy(generator)
    random = torch.Generator().manual_seed(seed)
    results = []
    for height, width in sizes:
        image = torch.rand(1, 3, height, width, generator=random) * 2 - 1
        (cartoon,) = session.run([_OUTPUT], {_INPUT: image.numpy()})
        with torch.inference_mode():
            expected = model(image).numpy()
        if cartoon.shape != expected.shape:
            raise ValueError(f"{name or path} returns shape {cartoon.shape} for an input of "
                             f"shape {tuple(image.shape)}; export it again with export_onnx")
        results.append({"height": height, "width": width,
                        "psnr": metrics.psnr(cartoon, expected),
                        "max_abs_diff": float(np.abs(cartoon - expected).max())})
    return results


class ExportCheckError(RuntimeError):
    """An exported graph that disagrees with the torch generator (under :data:`MIN_PSNR`) and
    so was not written; ``results``: :func:`check_onnx`'s rows."""

    def __init__(self, message: str, results: list[dict]) -> None:
        super().__init__(message)
        self.results = results


def export_checked(generator: nn.Module, path: str | os.PathLike, overwrite: bool = False,
                   opset: int | None = None, sizes: Sequence[tuple[int, int]] = CHECK_SIZES
                   ) -> list[dict]:
    """Write ``generator`` to ``path`` as an ONNX graph (:func:`export_onnx`, ``opset``) only
    once it agrees with the generator: :func:`check_onnx` on ``sizes``, every PSNR at least
    :data:`MIN_PSNR`.

    Before any work the target is checked and the extra imported (:func:`check_ready`). The
    graph is written and checked under a temporary name beside ``path``
    (:func:`cglib.files.atomic_path`) and renamed into place when it passes; when it does not,
    :class:`ExportCheckError` is raised, the temporary file is removed and a file already at
    ``path`` is left as it was. Returns :func:`check_onnx`'s rows.
    """
    path = check_ready(path, overwrite, opset)
    with files.atomic_path(path) as temporary:
        export_onnx(generator, temporary, opset=opset, overwrite=True)
        results = check_onnx(temporary, generator, sizes, name=path)
        worst = min(results, key=lambda row: row["psnr"])
        if worst["psnr"] < MIN_PSNR:
            raise ExportCheckError(
                f"the ONNX graph disagrees with the torch generator at {worst['height']}x"
                f"{worst['width']} ({worst['psnr']:.1f} dB, under {MIN_PSNR:.0f}), so {path} "
                "was not written (a file there is kept); try another opset (--opset) or another "
                "torch version", results)
    return results
