"""qkd-sweep's Python API, for notebooks and scripts (docs/api.md).

>>> import qkd_sweep
>>> row = qkd_sweep.run_trial(dataset="digits", teacher="none", qubits=3, epochs=1, out=None)
>>> trials = qkd_sweep.run_sweep("specs/quickstart.yaml", results="results", num_cpus=2)
>>> qkd_sweep.tables("results/quickstart")

The same options, checks and one-line errors as the ``qkd-sweep`` command
(:class:`QKDError`); a callable defined here (a notebook's circuit) goes wherever a
reference ``PKG.MODULE:CALLABLE`` goes, and a sweep sends it to its Ray workers.
"""

from qkd_sweep.api import Tables, load_results, run_sweep, run_trial, tables, trial_config
from qkd_sweep.errors import QKDError
from qkd_sweep.objects import reference
from workers.refs import register

__all__ = [
    "QKDError",
    "Tables",
    "load_results",
    "reference",
    "register",
    "run_sweep",
    "run_trial",
    "tables",
    "trial_config",
]
