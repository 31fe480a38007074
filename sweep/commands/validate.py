"""``qkd-sweep validate``: a spec checked and its grid, phases and pending trials printed,
without running anything; :func:`load` reads a spec as ``validate`` and ``sweep`` both do."""

from __future__ import annotations

import argparse
from collections import Counter

from sweep.grid import expand
from sweep.plan import finished_hashes, select
from sweep.preflight import check_creatable
from sweep.spec import load_spec
from workers.io import StorageError


def load(args: argparse.Namespace):
    spec = load_spec(args.spec).with_paths(args.data_root, args.results)
    try:  # the finished trials are read from here next: a folder the system refuses is one line too
        spec.results_dir.exists()
    except StorageError as exc:  # a URI no file system takes
        raise StorageError(f"paths.results: {exc}") from None
    except OSError as exc:
        raise StorageError(f"paths.results: cannot read {spec.results_dir}: {exc.strerror or exc}") from None
    return spec


def run(args: argparse.Namespace) -> int:
    spec = load(args)
    check_creatable(spec.results_dir)
    grid = expand(spec)
    trials = select(grid.trials, args.only)
    done = finished_hashes(spec.results_dir) if spec.search is None else set()
    pending = [c for c in trials if c.config_hash() not in done]
    jobs = grid.teacher_jobs(trials)
    print(f"spec {spec.name} ({spec.source}): valid" + (f" - {spec.description}" if spec.description else ""))
    print(f"  grid: {grid.n_combinations} combinations over {', '.join(spec.axes)}"
          f"{f' in {len(spec.grids)} subgrids' if len(spec.grids) > 1 else ''}; "
          f"{grid.n_duplicates} duplicates collapsed (a baseline does not vary T or lam), "
          f"{grid.n_combinations - grid.n_duplicates - len(grid.trials)} dropped")  # fmt: skip
    for line in grid.dropped:
        print(f"  {line}")
    by_teacher = Counter(c.teacher for c in trials)
    print(f"  phase 1 (teachers): {len(jobs)} tasks: "
          + ", ".join(f"{n} {a}" for a, n in sorted(Counter(j.arch for j in jobs).items())))  # fmt: skip
    if spec.search is None:
        print(f"  phase 2 (students): {len(trials)} trials: "
              + ", ".join(f"{n} {t}" for t, n in sorted(by_teacher.items())))  # fmt: skip
        print(f"  already finished: {len(trials) - len(pending)}; to run: {len(pending)}")
    else:
        s = spec.search
        print(f"  phase 2 (study): {s.num_samples} trials, {s.sampler} sampler over "
              f"{', '.join(p.name for p in s.params)}, {s.scheduler} scheduler, "
              f"objective {s.metric} ({s.mode})")  # fmt: skip
    print(f"  results: {spec.results_dir}   teacher cache: {spec.cache_dir}   data: {spec.data_root}")
    return 0
