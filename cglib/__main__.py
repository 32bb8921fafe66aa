"""The command line: ``python -m cglib <command> ...`` (also installed as ``cglib``).

Each command is one ``_add_<name>`` function that adds its sub-parser and sets ``run`` to the
function it calls; :data:`COMMANDS` lists them in help order.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from cglib import data, env, files, folders, inference


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from cglib import bench

    parser = sub.add_parser("bench", help="run a benchmark and print its numbers")
    parser.add_argument("name", choices=sorted(bench.BENCHMARKS), help="what to measure")
    parser.add_argument("--quick", action="store_true", help="fewer repeats (for tests)")
    parser.add_argument("clips", nargs="*", metavar="CLIP",
                        help="video: the clips to measure (default: three made offline)")

    def run(args: argparse.Namespace) -> None:
        clips = {"clips": args.clips} if args.clips else {}
        if clips and args.name != "video":
            raise SystemExit(f"bench {args.name} takes no clips; only bench video does")
        bench.BENCHMARKS[args.name](quick=args.quick, **clips)  # it prints its numbers

    parser.set_defaults(run=run)


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
    from cglib import config, train

    parser = sub.add_parser(
        "train", help="train CartoonGAN: initialization phase, then adversarial phase",
        description="Every setting of cglib.config.TrainConfig is an option; --profile picks "
                    "the preset (smoke, demo, paper) that the options override. On several "
                    "GPUs or processes: torchrun --nproc_per_node N -m cglib train ... "
                    "(--batch-size is the global batch).",
    )
    parser.add_argument("--profile", default="paper", choices=sorted(config.PRESETS))
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its newest checkpoint")
    parser.add_argument("--overwrite", action="store_true",
                        help="move a run already in --out aside (to "
                             "OUT.replaced-<date>-<time>) and start afresh")
    config.add_config_arguments(parser)

    def run(args: argparse.Namespace) -> None:
        overrides = {k: v for k, v in vars(args).items()
                     if k not in ("profile", "resume", "overwrite", "run", "command")}
        train.train(config.preset(args.profile, **overrides), resume=args.resume,
                    overwrite=args.overwrite)

    parser.set_defaults(run=run)


def _add_data(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="build the demo data set, import your own images "
                                         "and film frames, or fetch a public data set")
    actions = parser.add_subparsers(dest="action", required=True)
    for add in (_add_data_demo, _add_data_import, _add_data_fetch):
        add(actions)


def _add_data_demo(actions: argparse._SubParsersAction) -> None:
    demo = actions.add_parser(
        "demo", help="build (or reuse) the demo data set under the data folder, offline")
    demo.add_argument("--profile", default="auto",
                      help="smoke (64x64, a handful of images), demo or paper (256x256); "
                           "auto: CGLIB_PROFILE, else paper with a GPU and demo without")
    demo.add_argument("--source", default="auto",
                      help="cartoons from: filter, official:<style>, or auto (official:hayao "
                           "when its weights are present, else filter)")
    demo.add_argument("--seed", type=int, default=0)

    def run_demo(args: argparse.Namespace) -> None:
        from cglib import demodata, env

        profile, _ = env.resolve_profile(args.profile)
        demodata.ensure_demo_dataset(profile, args.source, args.seed)

    demo.set_defaults(run=run_demo)


def _add_data_import(actions: argparse._SubParsersAction) -> None:
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

    def run_import(args: argparse.Namespace) -> int:
        report = data.import_images(args.sources, args.out, args.domain, args.size,
                                    args.test_fraction, args.every, args.workers)
        counts = data.read_manifest(args.out)["counts"]
        code = _finish(report, args.out)
        print(f"{args.out} now holds " + ", ".join(f"{n} {name}" for name, n in counts.items()))
        return code

    importer.set_defaults(run=run_import)


def _add_data_fetch(actions: argparse._SubParsersAction) -> None:
    fetcher = actions.add_parser(
        "fetch", help="download a public data set and lay it out (animegan: AnimeGAN's "
                      "dataset-1, research use only)")
    fetcher.add_argument("name", choices=("animegan",), help="which public data set")
    fetcher.add_argument("--style", required=True,
                         help="the cartoons' style: hayao, shinkai, paprika or summerwar")
    fetcher.add_argument("--out", required=True, help="the data set folder")
    fetcher.add_argument("--size", type=int, default=256, help="side of the square images")
    fetcher.add_argument("--workers", type=int, default=None, help="processes (all cores)")
    fetcher.add_argument("--url", default=None, metavar="URL_OR_FILE",
                         help="a mirror's URL of the archive, or the path of a copy of it "
                              "(default: the authors' release)")

    def run_fetch(args: argparse.Namespace) -> None:
        from cglib import animegan

        manifest = animegan.fetch(args.style, args.out, url=args.url or animegan.ARCHIVE_URL,
                                  size=args.size, workers=args.workers)
        for name, reason in manifest["rejected"].items():
            print(f"  skipped {name}: {reason}")
        print(f"{args.out}: " + ", ".join(f"{n} {name}" for name, n in manifest["counts"].items()))
        print(manifest["terms"])

    fetcher.set_defaults(run=run_fetch)


def _add_edges(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "edges", help="edge-smooth a folder of cartoons into another (paper, section 3.2)")
    parser.add_argument("src", help="folder of cartoon images (searched recursively)")
    parser.add_argument("dst", help="folder for the smoothed copies (PNG, same names)")
    parser.add_argument("--size", type=int, default=256, help="side of the square outputs")
    parser.add_argument("--workers", type=int, default=None, help="processes (all cores)")

    def run(args: argparse.Namespace) -> int:
        return _finish(data.smooth_folder(args.src, args.dst, args.size, args.workers),
                       args.dst)

    parser.set_defaults(run=run)


def _tile(value: str) -> int | str:
    return value if value == "auto" else int(value)


def _add_cartoonize(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "cartoonize", help="cartoonize image and video files and folders with a released or "
                           "trained generator",
        description="Runs the authors' network on each whole, unpadded image or video frame, "
                    "exactly; large ones run in tiles that give the same result in bounded "
                    "memory. Videos keep their timing, rotation and sound (copied, not "
                    "re-encoded); they are written as .mp4 (from .mp4 and .mov) or .mkv. "
                    "Exit status: 0 when every input named was done (files in a folder that "
                    "cannot be used are skipped and listed); 1 when a file or folder named "
                    "was not, or nothing was produced; 2 on an error that stops the job; 130 "
                    "when interrupted (Ctrl-C), 143 when terminated (SIGTERM).")
    parser.add_argument("inputs", nargs="+", metavar="INPUT",
                        help="image or video files, or folders (searched recursively)")
    parser.add_argument("--style", default="hayao",
                        help="hayao, hosoda, paprika, shinkai (downloaded when missing) or a "
                             "generator file (official format or saved by cglib training)")
    parser.add_argument("--out", required=True, help="folder for <name>_<style>.<format>")
    parser.add_argument("--format", default="png", choices=folders.IMAGE_FORMATS,
                        dest="image_format", help="output image format")
    parser.add_argument("--crf", type=int, default=18, metavar="N",
                        help="video quality, 0 (best, largest) to 51; 18 (default) looks like "
                             "the input, each +6 about halves the size")
    parser.add_argument("--lossless", action="store_true",
                        help="write videos without loss (H.264 in RGB, for editing further; "
                             "VLC and mpv play it, browsers do not)")
    parser.add_argument("--temporal", choices=("on", "off"), default="on",
                        help="videos: on (default) carries the normalizations' statistics and "
                             "the previous cartoon along the optical flow from frame to frame, "
                             "so that the cartoon does not flicker (a scene cut starts afresh); "
                             "off cartoonizes each frame on its own")
    parser.add_argument("--max-side", type=int, default=None, metavar="N",
                        help="downsize first so the longer side is at most N pixels")
    parser.add_argument("--keep-colors", action="store_true",
                        help="keep the photo's colours: the cartoon's luma with its chroma")
    parser.add_argument("--strength", type=float, default=1.0,
                        help="blend with the photo: 0 = the photo, 1 = the cartoon (default)")
    parser.add_argument("--tile", type=_tile, default="auto",
                        help="side in pixels of the largest piece run at once (at least "
                             f"{inference.MIN_TILE}); tiles do not change the result. auto: "
                             f"{inference.CPU_TILE} on a CPU, from free memory on a GPU")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--precision", default="auto", choices=env.PRECISIONS,
                        help="auto: bf16 on CPUs with native bf16, else fp32")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo outputs that exist already (default: keep and skip them)")

    def run(args: argparse.Namespace) -> int:
        report = folders.cartoonize_files(
            args.inputs, args.style, args.out, args.image_format, args.overwrite, args.crf,
            args.lossless, temporal=args.temporal == "on", device=args.device,
            precision=args.precision, tile=args.tile,
            max_side=args.max_side, keep_colors=args.keep_colors, strength=args.strength)
        return _finish(report, args.out, folders.named_rejections(args.inputs, report))

    parser.set_defaults(run=run)


def _finish(report: data.JobReport, out: str, named: Sequence[str] = ()) -> int:
    """Print a folder job's report; exit status 1 when it left no output at all, or when
    inputs named on the command line (``named``: those rejected) were not done, else 0."""
    print(report.summary(out))
    if named:
        print(f"named but not done: {', '.join(named)}")
    return 0 if (report.written or report.up_to_date) and not named else 1


def _add_report(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser(
        "report", help="write a training run's HTML page: curves, the samples of every epoch, "
                       "measures and the checkpoint to pick")
    parser.add_argument("run_dir", metavar="RUN_DIR", help="the run folder (train --out)")
    parser.add_argument("--out", default=None, help="the HTML file (RUN_DIR/report.html)")

    def run(args: argparse.Namespace) -> None:
        from cglib import report

        print(report.render(args.run_dir, args.out))

    parser.set_defaults(run=run)


def _add_export(sub: argparse._SubParsersAction) -> None:
    from cglib import export

    sizes = ", ".join(f"{height}x{width}" for height, width in export.CHECK_SIZES)
    parser = sub.add_parser(
        "export", help="write a generator as an ONNX graph and check it against torch",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description=f"Write a released or trained generator as an ONNX graph, run it with\n"
                    f"onnxruntime beside torch on random inputs of {sizes} (H x W)\n"
                    f"and print the PSNR of each. FILE is written only when none is under "
                    f"{export.MIN_PSNR:.0f} dB;\n"
                    f"else the command fails and a FILE already there is kept.\n"
                    f'Needs the export extra: pip install "cglib[export]".\n\n'
                    f"The graph:\n{export.GRAPH_CONTRACT}",
    )
    parser.add_argument("--style", default="hayao",
                        help="hayao, hosoda, paprika, shinkai (downloaded when missing) or a "
                             "generator file (official format or saved by cglib training)")
    parser.add_argument("--onnx", required=True, metavar="FILE", help="the ONNX file to write")
    parser.add_argument("--overwrite", action="store_true", help="replace FILE if it exists")
    opsets = export.supported_opsets()
    parser.add_argument("--opset", type=int, default=None,
                        help=f"ONNX operator set, {opsets.start} to {opsets.stop - 1} with this "
                             "torch (default: the exporter's)")

    def run(args: argparse.Namespace) -> None:
        from cglib import pretrained

        try:
            path = export.check_ready(args.onnx, args.overwrite, args.opset)  # before any download
            generator = pretrained.load(args.style)
            results = export.export_checked(generator, path, args.overwrite, args.opset)
        except ImportError as error:  # the export extra is missing: the message says so
            raise RuntimeError(str(error)) from None
        except export.ExportCheckError as error:
            _print_check(error.results)
            raise
        _print_check(results)

    parser.set_defaults(run=run)


def _print_check(results: list[dict]) -> None:
    """One line per size that ``export`` checked: its PSNR and largest difference."""
    for row in results:
        print(f"{row['height']}x{row['width']}: {row['psnr']:.1f} dB, "
              f"max |diff| {row['max_abs_diff']:.1e}")


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    _add_data,
    _add_edges,
    _add_train,
    _add_cartoonize,
    _add_export,
    _add_report,
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
        with files.terminate_as_interrupt():  # SIGTERM stops a command as Ctrl-C does
            return args.run(args) or 0
    except KeyboardInterrupt as interrupt:
        print(str(interrupt) or "interrupted: finished outputs are kept; run the same command "
              "again to continue", file=sys.stderr)
        return files.exit_status(interrupt)
    except OSError as error:  # our own messages carry no errno; the system's get explained
        message = str(error) if error.errno is None else files.explain_os_error(error)
        print(f"error: {message}", file=sys.stderr)
        return 2
    except (ValueError, RuntimeError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
