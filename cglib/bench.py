"""Benchmarks that print their numbers: ``python -m cglib bench <name>``.

Each benchmark is a function ``(quick: bool) -> dict`` that prints a small table and returns
the numbers; :data:`BENCHMARKS` maps names to them. Nothing here asserts a speed: the numbers
are for people and notes.
"""

from __future__ import annotations

import time
from collections.abc import Callable


def timeit(fn: Callable[[], object], repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``repeats`` calls of ``fn`` after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    times.sort()
    return times[len(times) // 2]


BENCHMARKS: dict[str, Callable[..., dict]] = {}
