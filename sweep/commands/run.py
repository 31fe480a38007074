"""``qkd-sweep sweep``: a spec run (teachers, then student trials under Ray Tune), its
summary printed, then its tables, or a study's best trial and leaderboard."""

from __future__ import annotations

import argparse

from sweep.commands.validate import load
from sweep.driver import run_sweep
from sweep.search import leaderboard


def run(args: argparse.Namespace) -> int:
    spec = load(args)
    summary = run_sweep(spec, address=args.address, num_cpus=args.num_cpus, fresh=args.fresh,
                        only=args.only, verbose=1 if args.verbose and not args.quiet else 0)  # fmt: skip
    for line in summary.lines():
        print(line)
    if spec.search is not None:
        print(summary.best or "")
        print(leaderboard(spec))
    elif not args.no_tables and (spec.results_dir / "trials.parquet").exists():
        from sweep import tables  # noqa: PLC0415 - SciPy and matplotlib: not before the sweep's first line

        paths = tables.write_tables(spec.results_dir)
        print()
        print(tables.markdown_tables(spec.results_dir))
        print(f"tables and figures: {', '.join(str(p) for p in paths.values())}")
    return 0 if summary.failed == 0 else 1
