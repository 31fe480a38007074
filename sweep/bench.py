"""``qkd-sweep bench``: the command-line face of :func:`sweep.bench_quantum.run_bench`.

Only running and printing live here (its options are parsed in :mod:`sweep.cli`); the measuring is in
:mod:`sweep.bench_quantum` (the quantum paths and one trial) and
:mod:`sweep.bench_sweep` (whole sweeps, through Ray), so that it runs the same
from the CLI, ``make bench`` and the tests. The sweep's speed-up with two workers
is passed in as a hook (``sweep_speedup``) by whoever wires this command up, so
that a quick run leaves it out and the quantum measurements never import Ray.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

DEFAULT_OUT = "results/bench.json"


def run(args: argparse.Namespace, sweep_speedup: Callable[[], float] | None = None) -> int:
    from sweep.bench_quantum import format_table, run_bench  # noqa: PLC0415 (torch and the backends: not at CLI start)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    result = run_bench(args.out, args.data_root, quick=args.quick, sweep_speedup=sweep_speedup, progress=progress)
    print(format_table(result))
    print(f"results   {args.out}")
    return 0
