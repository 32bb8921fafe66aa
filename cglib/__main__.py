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


COMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
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
