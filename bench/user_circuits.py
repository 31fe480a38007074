"""Benchmarks of a user's Qiskit circuit (issue 21), importing the product as a user would.

The circuit: Ry(x[k]) on each of 4 qubits, then Qiskit's ``efficient_su2(4, reps=2)`` (24
weights, RY and RZ layers with CX entanglers), compiled once by
:func:`workers.usercircuit.compile_circuit`. Keys (merged into ``--out``, the bench JSON
``make bench`` writes):

* ``sv_grad_us_q4_su2``: exact probabilities, forward + autograd backward to x and w, per
  sample at batch 1024, on the complex torch executor;
* ``pennylane_grad_us_q4_su2``: the same circuit on PennyLane's ``default.qubit`` with
  torch backprop, same batch, and ``lightning_adjoint_grad_us_q4_su2``: ``lightning.qubit``
  with the adjoint method, which differentiates expectation values only, so of <Z> per
  qubit instead of the 16 probabilities, one sample at a time (for reference, not a floor);
* ``sampled_grad_us_q4_su2``: 5000 shots per circuit, the parameter-shift rule (57 circuits a
  sample: the sample and two shifts of each of its 28 angles), counts drawn as one
  multinomial per circuit from the exact distribution, per sample at batch 32;
* ``aer_sampled_grad_us_q4_su2``: the same circuits on Aer as the project runs Aer (its
  ``slot_circuit`` transpiled once, every row bound at run time, each row's distribution
  saved and its 5000 counts drawn as one multinomial), per sample;
* the ratios ``ratio_pennylane_over_sv_grad_q4_su2`` and ``ratio_aer_over_sampled_grad_q4_su2``.

Each figure is the median of ``--repeats`` runs after one warm-up, on one torch thread.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from qiskit import QuantumCircuit, transpile
from qiskit.circuit import ParameterVector
from qiskit.circuit.library import efficient_su2
from qiskit_aer import AerSimulator

from bench.quantum import median_seconds
from workers.backends.complex_sv import ComplexStatevectorExecutor
from workers.backends.shift import shift_plan
from workers.usercircuit import compile_circuit

N_QUBITS, BATCH, SAMPLED_BATCH, SHOTS = 4, 1024, 32, 5000


def user_circuit(n: int):
    """What a user's module would hold: data angles, then a library ansatz on weights ``w``."""
    x = ParameterVector("x", n)
    ansatz = efficient_su2(n, reps=2)
    w = ParameterVector("w", ansatz.num_parameters)
    qc = QuantumCircuit(n)
    for k in range(n):
        qc.ry(x[k], k)
    return qc.compose(ansatz.assign_parameters(dict(zip(ansatz.parameters, w, strict=True))))


def _grad_step(probabilities, x, w, upstream):
    def step():
        xs, ws = x.clone().requires_grad_(True), w.clone().requires_grad_(True)
        (probabilities(xs, ws) * upstream).sum().backward()
        return xs.grad, ws.grad

    return step


def pennylane_qnode(uc, diff_method: str, device: str, expvals: bool = False):
    """The compiled circuit's gates on a PennyLane device (qubit 0 least significant, as Qiskit);
    with ``expvals``, <Z> of every qubit instead of the probabilities (the adjoint method
    differentiates expectation values only)."""
    import pennylane as qml  # noqa: PLC0415 - the bench extra's; a missing one is a key saying so

    n = uc.n_qubits
    dev = qml.device(device, wires=n)
    ops = {"ry": qml.RY, "rz": qml.RZ, "rx": qml.RX}

    @qml.qnode(dev, interface="torch", diff_method=diff_method)
    def circuit(x, w):
        angles = uc.angles.torch(x.reshape(-1, uc.n_x), w)
        for g in uc.gates:
            wires = [n - 1 - q for q in g.qubits]
            if g.name == "cx":
                qml.CNOT(wires=wires)
            else:
                angle = angles[..., g.slots[0]].squeeze(0) if x.ndim == 1 else angles[:, g.slots[0]]
                ops[g.name](angle, wires=wires[0])
        if expvals:
            return [qml.expval(qml.PauliZ(q)) for q in range(n)]
        return qml.probs(wires=list(range(n)))

    return circuit


def run(repeats: int) -> dict:
    torch.set_num_threads(1)
    uc = compile_circuit(user_circuit(N_QUBITS), N_QUBITS)
    ex = ComplexStatevectorExecutor(uc)
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.uniform(-np.pi, np.pi, (BATCH, uc.n_x)))
    w = torch.as_tensor(rng.uniform(-np.pi, np.pi, uc.n_weights))
    upstream = torch.as_tensor(rng.normal(size=(BATCH, 2**N_QUBITS)))
    out: dict = {}
    out["sv_grad_us_q4_su2"] = median_seconds(_grad_step(ex.probabilities, x, w, upstream), repeats) / BATCH * 1e6
    try:
        pl = pennylane_qnode(uc, "backprop", "default.qubit")
        with torch.no_grad():
            out["pennylane_max_abs_diff_q4_su2"] = float((pl(x, w) - ex.probabilities(x, w)).abs().max())
        out["pennylane_grad_us_q4_su2"] = median_seconds(_grad_step(pl, x, w, upstream), repeats) / BATCH * 1e6
        adj = pennylane_qnode(uc, "adjoint", "lightning.qubit", expvals=True)
        one = [(x[i], upstream[i, :N_QUBITS]) for i in range(16)]

        def adjoint():
            for xi, ui in one:
                _grad_step(lambda a, b: torch.stack(adj(a, b)), xi, w, ui)()

        out["lightning_adjoint_grad_us_q4_su2"] = median_seconds(adjoint, max(1, repeats // 3)) / len(one) * 1e6
    except ImportError as exc:  # the bench extra brings PennyLane; say so instead of failing
        out["pennylane_grad_us_q4_su2"] = f"not measured: {exc}"
    offsets, coefs = shift_plan(uc)
    xs, ws = x[:SAMPLED_BATCH].numpy(), w.numpy()

    def rows_of(angles: np.ndarray) -> np.ndarray:
        return np.concatenate([angles, (angles[:, None, :] + offsets[None]).reshape(-1, uc.n_slots)])

    def sampled_torch():
        probs = ex.run_angles(rows_of(uc.angles.numpy(xs, ws)))
        freqs = np.stack([rng.multinomial(SHOTS, p / p.sum()) for p in probs]) / SHOTS
        shifted = freqs[SAMPLED_BATCH:].reshape(SAMPLED_BATCH, len(offsets), -1)
        return np.einsum("st,btd->bsd", coefs, shifted)

    out["sampled_grad_us_q4_su2"] = median_seconds(sampled_torch, repeats) / SAMPLED_BATCH * 1e6
    # Aer as this project runs it: the circuit transpiled once, every row bound at run time,
    # each row's exact distribution saved and its 5000 counts drawn as one multinomial.
    sim = AerSimulator(method="statevector", runtime_parameter_bind_enable=True, max_parallel_threads=1,
                       seed_simulator=0)  # fmt: skip
    qc = uc.slot_circuit()
    qc.save_probabilities()
    compiled = transpile(qc, sim, optimization_level=0)
    slots = {p.index: p for p in compiled.parameters}

    def sampled_aer():
        rows = rows_of(uc.angles.numpy(xs, ws))
        binds = [{slots[k]: rows[:, k].tolist() for k in slots}]
        result = sim.run([compiled], parameter_binds=binds).result()
        probs = np.stack([np.asarray(result.data(i)["probabilities"]) for i in range(len(rows))])
        freqs = np.stack([rng.multinomial(SHOTS, p / p.sum()) for p in probs]) / SHOTS
        shifted = freqs[SAMPLED_BATCH:].reshape(SAMPLED_BATCH, len(offsets), -1)
        return np.einsum("st,btd->bsd", coefs, shifted)

    out["aer_sampled_grad_us_q4_su2"] = median_seconds(sampled_aer, max(1, repeats // 3)) / SAMPLED_BATCH * 1e6
    if isinstance(out.get("pennylane_grad_us_q4_su2"), float):
        out["ratio_pennylane_over_sv_grad_q4_su2"] = out["pennylane_grad_us_q4_su2"] / out["sv_grad_us_q4_su2"]
    out["ratio_aer_over_sampled_grad_q4_su2"] = out["aer_sampled_grad_us_q4_su2"] / out["sampled_grad_us_q4_su2"]
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="results/bench.json", help="bench JSON to merge the keys into")
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args()
    keys = run(args.repeats)
    path = Path(args.out)
    merged = json.loads(path.read_text()) if path.exists() else {}
    merged.update(keys)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(merged, indent=2, sort_keys=True))
    tmp.replace(path)
    for k, v in keys.items():
        print(f"{k:40s} {v:.4g}" if isinstance(v, float) else f"{k:40s} {v}")


if __name__ == "__main__":
    main()
