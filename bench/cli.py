"""``python -m bench`` (what ``make bench`` runs): the command line of :func:`bench.quantum.run_bench`.

Only parsing, running and printing live here; the measuring is in :mod:`bench.quantum` (the
quantum paths and one trial) and :mod:`bench.sweeps` (whole sweeps, through Ray), so that it
runs the same from this command, ``make bench`` and the tests. The sweep's speed-up with two
workers is passed in as a hook (``sweep_speedup``) by :func:`main`, so that a quick run leaves
it out and the quantum measurements never import Ray. The options are those ``qkd-sweep
bench`` had when the benchmarks were part of the product.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable

from workers.errors import ConfigError
from workers.io import DataError, StorageError

DEFAULT_OUT = "results/bench.json"
#: What bad input (a spec or data error, a missing file) exits with, as the product's CLI does.
EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m bench",
        description="Time the Aer student path against a naive per-sample Qiskit loop, the statevector "
        "backend against PennyLane, one whole trial at the paper's settings and (unless --quick) whole "
        "sweeps on one worker and on two; print a table and write the measurements as one flat JSON object.",
    )
    p.add_argument("--out", default=DEFAULT_OUT, metavar="FILE",
                   help="where the JSON object goes (default: %(default)s)")  # fmt: skip
    p.add_argument("--data-root", default=None,
                   help="folder holding MNIST/raw; without its files the trial runs on digits "
                   "(default: $QKD_DATA_ROOT)")  # fmt: skip
    p.add_argument("--quick", action="store_true", help="tiny sizes and few repeats: a smoke run, not a measurement")
    p.add_argument("--verbose", "-v", action="store_true", help="log teacher training")
    return p


def run(args: argparse.Namespace, sweep_speedup: Callable[[], float] | None = None) -> int:
    from bench.quantum import format_table, run_bench  # noqa: PLC0415 (torch and the backends: not at --help)

    def progress(message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    result = run_bench(args.out, args.data_root, quick=args.quick, sweep_speedup=sweep_speedup, progress=progress)
    print(format_table(result))
    print(f"results   {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    if args.verbose:
        logging.getLogger("workers").setLevel(logging.INFO)
    from bench import sweeps  # noqa: PLC0415 (it imports torch: not at --help)

    measure = None if args.quick else lambda: sweeps.measure(args.data_root)
    try:
        return run(args, sweep_speedup=measure)
    except (ConfigError, DataError, FileNotFoundError, StorageError) as exc:
        print(f"bench: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
