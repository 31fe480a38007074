"""Benchmarks of the product, kept outside it: ``make bench`` (``python -m bench``).

Nothing here ships with ``qkd-sweep``: the package list in ``pyproject.toml`` names
``sweep``, ``workers`` and ``qkd_sweep`` only, and none of them imports this folder. The
benchmarks use the product the way a user's code would, through its public modules, so
that what they time is what a user runs, and so that the product carries no measuring
code (nor the circuits it times, which :mod:`workers.circuits` builds).

* :mod:`bench.quantum`: the quantum paths (Aer, a naive Qiskit loop, the torch
  statevector backend, PennyLane) and one whole trial in a child process;
* :mod:`bench.sweeps`: whole ``qkd-sweep sweep`` runs through Ray (two workers, short
  trials, the paper's MNIST cells, the quickstart);
* :mod:`bench.writes`: what the driver's result writes cost per trial as a table grows
  (``python -m bench.writes``);
* :mod:`bench.cli`: the command line of the first two (``python -m bench``);
* :mod:`bench.user_circuits`: a user's Qiskit circuit (``python -m bench.user_circuits``),
  whose keys ``make bench`` merges into the same JSON.

It is importable as ``bench`` from the repository's root (``python -m bench``,
``python -m pytest``), which is where ``make`` runs.
"""
