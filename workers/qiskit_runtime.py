"""The worker set-up hook of a sweep whose trials use Qiskit (:data:`workers.runtime.HOOKS`):
Qiskit and Aer imported, and one small circuit built and compiled, on the worker's main
thread, before any trial runs (:mod:`workers.runtime` says why). A module of its own, so
that the torch-only hook and a statevector trial never import Qiskit."""

from __future__ import annotations

from qiskit import QuantumCircuit, transpile
from qiskit.circuit import Parameter
from qiskit_aer import AerSimulator

from workers.runtime import prepare_torch_process


def prepare_process() -> None:
    """:func:`~workers.runtime.prepare_torch_process`, then import Qiskit and Aer and build and compile one
    small circuit on this thread."""
    prepare_torch_process()
    qc = QuantumCircuit(2)
    qc.h(0)
    qc.ry(Parameter("t"), 1)
    qc.cx(0, 1)
    transpile(qc, AerSimulator())
