"""``qkd-sweep bench``: the command-line face of :func:`sweep.bench_quantum.run_bench`.

Only argument handling and printing live here; the measuring is in
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


def add_parser(sub: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = sub.add_parser(
        "bench",
        help="measure the quantum paths (Aer, naive Qiskit, statevector, PennyLane) and one trial",
        description="Time the Aer student path against a naive per-sample Qiskit loop, the statevector "
        "backend against PennyLane, and one whole trial at the paper's settings; print a table and "
        "write the measurements as one flat JSON object.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--out", default=DEFAULT_OUT, metavar="FILE", help="where the JSON object goes")
    p.add_argument("--data-root", default=None,
                   help="folder holding MNIST/raw; without its files the trial runs on digits "
                   "(default: $QKD_DATA_ROOT)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats: a smoke run, not a measurement")
    return p


def run(args: argparse.Namespace, sweep_speedup: Callable[[], float] | None = None) -> int:
    from sweep.bench_quantum import format_table, run_bench  # noqa: PLC0415 (torch and the backends: not at CLI start)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    result = run_bench(args.out, args.data_root, quick=args.quick, sweep_speedup=sweep_speedup, progress=progress)
    print(format_table(result))
    print(f"results   {args.out}")
    return 0
