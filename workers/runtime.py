"""Process set-up that must happen on a process's main thread, before any trial runs.

Qiskit's compiled core keeps per-thread allocator state that it sets up on
the thread that first uses it. If that thread ends (as the thread a Ray Tune
trial runs in does) and another thread then builds a circuit, the process
can die with SIGSEGV inside the allocator: measured here, 5 crashes in 8
runs of "build a circuit on a short-lived thread, then on another one", and
none in 10 runs once the main thread had built one first. Ray runs
:func:`workers.qiskit_runtime.prepare_process` on each worker's main thread as it starts (the
``worker_process_setup_hook`` the sweep driver sets) when the sweep's trials use
Qiskit, and :func:`prepare_torch_process` when none does: a torch statevector
trial never imports Qiskit, and the import and the small transpile cost every
worker 1.7 s of its start (measured on the dev VM: a Tune trial actor's hook took
1.74 s of the 9 s between ``Tuner.fit`` and the first trial's start).
"""

from __future__ import annotations

import os

#: The hooks by whether the sweep's workers will build circuits for Qiskit.
HOOKS = {True: "workers.qiskit_runtime.prepare_process", False: "workers.runtime.prepare_torch_process"}


def prepare_torch_process() -> None:
    """What every worker needs: Arrow's allocator from the system (no Qiskit)."""
    os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")
