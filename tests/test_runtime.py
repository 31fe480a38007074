"""Worker process set-up: the Qiskit hook only where a sweep's trials use Qiskit.

A worker whose trials build circuits for Qiskit must initialize Qiskit on its main
thread first (workers/runtime.py says why); a sweep whose trials are all on the torch
statevector skips that import, 1.7 s of every worker's start. That is only safe while
a statevector trial never imports Qiskit, which the first test holds.
"""

import subprocess
import sys

import pytest

import sweep.ray_env as ray_env
from workers.config import TrialConfig
from workers.runtime import HOOKS

#: A tiny statevector trial with shots and parameter-shift, then whether Qiskit got imported.
_NO_QISKIT = """
import sys
from workers.config import TrialConfig
from workers.trial import run_trial
cfg = TrialConfig(dataset="digits", classes="0-3", teacher="none", qubits=2, backend="statevector",
                  shots=100, epochs=1, samples_per_class=3, test_samples_per_class=3, val_samples_per_class=2)
row = run_trial(cfg).row
print(row["status"], row["executor"], sorted(m for m in ("qiskit", "qiskit_aer") if m in sys.modules))
"""


def test_a_statevector_trial_never_imports_qiskit():
    out = subprocess.run([sys.executable, "-c", _NO_QISKIT], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["ok", "statevector", "[]"], out.stdout


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        ({"backend": "statevector"}, False),
        ({"backend": "statevector", "shots": 5000}, False),
        ({"backend": "aer"}, True),
        ({"backend": "aer", "noise": "depolarizing:0.001"}, True),
        ({"backend": "aer", "test_noise": "depolarizing:0.01"}, True),
    ],
)
def test_uses_qiskit_says_which_trials_build_circuits_for_it(settings, expected):
    assert TrialConfig(**settings).validate().uses_qiskit is expected


class _FakeRay:
    """ray's init / is_initialized / shutdown / job id, recording each init's runtime env."""

    def __init__(self):
        self.inits, self.up, self.job = [], False, 0

    def init(self, **kwargs):
        self.inits.append(kwargs["runtime_env"]["worker_process_setup_hook"])
        self.up, self.job = True, self.job + 1

    def is_initialized(self):
        return self.up

    def shutdown(self):
        self.up = False

    def get_runtime_context(self):
        job = self.job

        class Context:
            def get_job_id(self):
                return f"job{job}"

        return Context()


def test_connect_picks_the_hook_and_restarts_its_own_ray_only_to_add_qiskit(monkeypatch):
    fake = _FakeRay()
    monkeypatch.setattr(ray_env, "ray", fake)
    monkeypatch.setattr(ray_env, "_started", None)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    ray_env.connect(num_cpus=1, qiskit=False)
    assert fake.inits == [HOOKS[False]]
    ray_env.connect(num_cpus=1, qiskit=False)  # the same Ray serves a second torch-only sweep
    assert fake.inits == [HOOKS[False]]
    ray_env.connect(num_cpus=1, qiskit=True)  # a sweep on Aer needs the Qiskit hook: a new Ray
    assert fake.inits == [HOOKS[False], HOOKS[True]] and fake.up
    ray_env.connect(num_cpus=1, qiskit=False)  # workers with Qiskit set up serve any sweep
    assert fake.inits == [HOOKS[False], HOOKS[True]]
    fake.shutdown()
    fake.init(runtime_env={"worker_process_setup_hook": "someone.elses"})  # a Ray this module did not start
    ray_env.connect(num_cpus=1, qiskit=True)
    assert fake.inits[-1] == "someone.elses" and fake.up, "another's Ray is never restarted"


def test_the_driver_asks_for_qiskit_where_a_grid_trial_or_a_study_choice_uses_it():
    from types import SimpleNamespace

    from sweep.driver import _needs_qiskit
    from sweep.spec_search import SearchParam

    torch_only, on_aer = TrialConfig(backend="statevector"), TrialConfig(backend="aer")
    grid = SimpleNamespace(search=None)
    assert not _needs_qiskit(grid, [torch_only, torch_only])
    assert _needs_qiskit(grid, [torch_only, on_aer])

    def study(*params):
        return SimpleNamespace(search=SimpleNamespace(params=list(params)))

    lr = SearchParam("lr", low=1e-4, high=1e-2, log=True)
    assert not _needs_qiskit(study(lr, SearchParam("head", choices=("linear", "log"))), [torch_only])
    assert _needs_qiskit(study(lr, SearchParam("backend", choices=("statevector", "aer"))), [torch_only])
    assert _needs_qiskit(study(SearchParam("test_noise", choices=("none", "depolarizing:0.01"))), [torch_only])
