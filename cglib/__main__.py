"""The command line: ``python -m cglib <command> ...`` (also installed as ``cglib``).

Each command is one ``_add_<name>`` function that adds its sub-parser and sets ``run`` to the
function it calls; :data:`COMMANDS` lists them in help order.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from cglib import bench

    parser = sub.add_parser("bench", help="run a benchmark and print its numbers")
    parser.add_argument("name", choices=sorted(bench.BENCHMARKS), help="what to measure")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (for tests)")
    parser.set_defaults(run=lambda args: bench.BENCHMARKS[args.name](quick=args.quick))


def _add_demo(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "demo", help="run the whole notebook series headless into runs/<profile>-<timestamp>/"
    )
    parser.add_argument("--profile", default="demo", help="smoke, demo or paper")
    parser.add_argument("--only", nargs="*", default=None, help="notebook numbers, e.g. 00 01")

    def run(args: argparse.Namespace) -> None:
        from cglib import series

        series.run_series(profile=args.profile, only=args.only)

    parser.set_defaults(run=run)


def _add_notebooks(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "notebooks", help="rewrite every notebook's Colab cell and badge from cglib.env"
    )
    parser.add_argument("--sync", action="store_true", required=True)

    def run(args: argparse.Namespace) -> None:
        from cglib import series

        for path in series.sync_headers():
            print(f"updated {path}")

    parser.set_defaults(run=run)


def _add_train(sub: argparse._SubParsersAction) -> None:
    from cglib import train

    parser = sub.add_parser(
        "train", help="train CartoonGAN: initialization phase, then adversarial phase",
        description="Every setting of cglib.train.TrainConfig is an option; --profile picks "
                    "the preset (smoke, demo, paper) that the options override.",
    )
    parser.add_argument("--profile", default="paper", choices=sorted(train.PRESETS))
    parser.add_argument("--resume", action="store_true",
                        help="continue from the newest checkpoint in --out")
    train.add_config_arguments(parser)

    def run(args: argparse.Namespace) -> None:
        overrides = {k: v for k, v in vars(args).items()
                     if k not in ("profile", "resume", "run", "command")}
        config = train.preset(args.profile, **overrides)
        train.train(config, resume=args.resume)

    parser.set_defaults(run=run)


def _add_data(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="build the demo data set, or import your own images "
                                         "and film frames")
    actions = parser.add_subparsers(dest="action", required=True)
    demo = actions.add_parser(
        "demo", help="build (or reuse) the demo data set under the data folder, offline")
    demo.add_argument("--profile", default="auto",
                      help="smoke (64x64, a handful of images), demo or paper (256x256); "
                           "auto: CGLIB_PROFILE, else paper with a GPU and demo without")
    demo.add_argument("--source", default="auto",
                      help="cartoons from: filter, official:<style>, or auto (official:hayao "
                           "when its weights are present, else filter)")
    demo.add_argument("--seed", type=int, default=0)
    importer = actions.add_parser(
        "import", help="import folders of images (nested) and videos into a data set")
    importer.add_argument("sources", nargs="+", metavar="SRC",
                          help="folders, image files (jpg, jpeg, png, webp, bmp) or videos "
                               "(mp4, mkv, avi, mov, webm)")
    importer.add_argument("--out", required=True, help="the data set folder")
    importer.add_argument("--domain", required=True, choices=("photos", "cartoons"))
    importer.add_argument("--size", type=int, default=256, help="side of the square images")
    importer.add_argument("--test-fraction", type=float, default=0.1,
                          help="share of new photos put in photos_test/")
    importer.add_argument("--every", type=float, default=2.0,
                          help="seconds between the video frames sampled")
    importer.add_argument("--workers", type=int, default=None, help="processes (all cores)")

    def run_demo(args: argparse.Namespace) -> None:
        from cglib import demodata, env

        profile, _ = env.resolve_profile(args.profile)
        demodata.ensure_demo_dataset(profile, args.source, args.seed)

    def run_import(args: argparse.Namespace) -> None:
        from cglib import data

        report = data.import_images(args.sources, args.out, args.domain, args.size,
                                    args.test_fraction, args.every, args.workers)
        print(report.summary())
        counts = data.read_manifest(args.out)["counts"]
        print(f"{args.out}: " + ", ".join(f"{n} {name}" for name, n in counts.items()))

    demo.set_defaults(run=run_demo)
    importer.set_defaults(run=run_import)


def _add_edges(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "edges", help="edge-smooth a folder of cartoons into another (paper, section 3.2)")
    parser.add_argument("src", help="folder of cartoon images (searched recursively)")
    parser.add_argument("dst", help="folder for the smoothed copies (PNG, same names)")
    parser.add_argument("--size", type=int, default=256, help="side of the square outputs")
    parser.add_argument("--workers", type=int, default=None, help="processes (all cores)")

    def run(args: argparse.Namespace) -> None:
        from cglib import data

        print(data.smooth_folder(args.src, args.dst, args.size, args.workers).summary())

    parser.set_defaults(run=run)


def _add_cartoonize(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "cartoonize", help="cartoonize image files and folders with a released or trained "
                           "generator")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image files or folders (searched recursively)")
    parser.add_argument("--style", default="hayao",
                        help="hayao, hosoda, paprika, shinkai (downloaded when missing) or a "
                             "generator file (official format or saved by cglib training)")
    parser.add_argument("--out", required=True, help="folder for <name>_<style>.<format>")
    parser.add_argument("--format", default="png", choices=("png", "jpg", "webp"),
                        dest="image_format", help="output image format")
    parser.add_argument("--tile", type=int, default=None,
                        help="tile side in pixels for large images (multiple of 4)")
    parser.add_argument("--overlap", type=int, default=None, help="tile overlap in pixels")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "fp16"))

    def run(args: argparse.Namespace) -> None:
        from cglib import pretrained

        options = {name: value for name in ("tile", "overlap")
                   if (value := getattr(args, name)) is not None}
        written, skipped = pretrained.cartoonize_files(
            args.inputs, args.style, args.out, args.image_format, device=args.device,
            precision=args.precision, **options)
        for line in skipped:
            print(f"skipped {line}", file=sys.stderr)
        print(f"wrote {len(written)} image{'' if len(written) == 1 else 's'} to {args.out}"
              + (f"; skipped {len(skipped)} (listed above)" if skipped else ""))

    parser.set_defaults(run=run)


def _add_export(sub: argparse._SubParsersAction) -> None:
    from cglib import export

    sizes = ", ".join(f"{height}x{width}" for height, width in export.CHECK_SIZES)
    parser = sub.add_parser(
        "export", help="write a generator as an ONNX graph and check it against torch",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"Write a released or trained generator as an ONNX file, then run it with\n"
                    f"onnxruntime beside torch on random inputs of {sizes} (H x W)\n"
                    f"and print the PSNR of each; fail when one is under "
                    f"{export.MIN_PSNR:.0f} dB.\n"
                    f'Needs the export extra: pip install "cglib[export]".\n\n'
                    f"The graph:\n{export.GRAPH_CONTRACT}",
    )
    parser.add_argument("--style", default="hayao",
                        help="hayao, hosoda, paprika, shinkai (downloaded when missing) or a "
                             "generator file (official format or saved by cglib training)")
    parser.add_argument("--onnx", required=True, metavar="FILE", help="the ONNX file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    parser.add_argument("--opset", type=int, default=None,
                        help="ONNX operator set (default: the exporter's; 18 or more where "
                             "torch's exporter is the torch.export-based one, torch >= 2.9)")

    def run(args: argparse.Namespace) -> None:
        from cglib import files, pretrained

        try:
            path = export.check_target(args.onnx, args.overwrite)  # before any download
            generator = pretrained.load_official(args.style)
            export.export_onnx(generator, path, opset=args.opset, overwrite=args.overwrite)
            results = export.check_onnx(path, generator)
        except OSError as error:
            raise RuntimeError(files.explain_os_error(error)) from None
        except ImportError as error:
            raise RuntimeError(str(error)) from None
        for row in results:
            print(f"{row['height']}x{row['width']}: {row['psnr']:.1f} dB, "
                  f"max |diff| {row['max_abs_diff']:.1e}")
        worst = min(results, key=lambda row: row["psnr"])
        if worst["psnr"] < export.MIN_PSNR:
            raise RuntimeError(
                f"{path} disagrees with the torch generator at {worst['height']}x"
                f"{worst['width']} ({worst['psnr']:.1f} dB, under {export.MIN_PSNR:.0f}); "
                "do not use it: try another --opset or another torch version")

    parser.set_defaults(run=run)


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_data,
    _add_edges,
    _add_train,
    _add_cartoonize,
    _add_export,
    _add_demo,
    _add_notebooks,
    _add_bench,
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cglib", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in COMMANDS:
        add(sub)
    args = parser.parse_args(argv)
    try:
        args.run(args)
    except (FileNotFoundError, ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
