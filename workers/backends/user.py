"""The backend of a user's circuit (``student: circuit``): today's :class:`Backend`, fed slot angles.

A :class:`~workers.usercircuit.UserCircuit`'s angles are *slots* (expressions of ``x`` and
``w``), not the bound rows (encoding angles, then weights) the built-in circuits run, so
it needs two things of its own and nothing else:

* executors that take ``(x, w)`` and rows of slot angles: the complex torch statevector
  (:class:`~workers.backends.complex_sv.ComplexStatevectorExecutor`, as it is) or
  :class:`UserAerExecutor`, which runs the user's circuit as written (transpiled by Qiskit
  once, :data:`AER_BASIS`; ``x`` and ``w`` bound at run time) and, for shifted rows, the description's
  :meth:`~workers.usercircuit.UserCircuit.slot_circuit`; both return exact probabilities;
* :class:`SlotShift`, the parameter-shift gradient over slots (each gate's own rule,
  :func:`workers.backends.shift.slot_rules`) and the chain rule through the angle
  expressions, every shifted circuit measured as the forward one is.

The measurement is today's (:mod:`workers.backends.measurement`): exact, or a multinomial
per row from the trial's shot stream. So Aer and the torch executor, which agree on the
probabilities, draw the same counts from one seed. The shifted rows are laid out per
sample as today's are (the circuit, then every slot at its rule's first shift, then at
its second, ...): the released notebooks' circuit written by hand (H, then Ry(x[k])) draws
exactly what ``cnn-angle`` draws. Built-in circuits never reach this module
(:func:`workers.backends.make_backend` imports it only for a user circuit).
"""

from __future__ import annotations

import numpy as np
import torch
from qiskit import transpile
from qiskit_aer import AerSimulator

from workers.backends import Backend
from workers.backends.complex_sv import ComplexStatevectorExecutor
from workers.backends.gradient import Autograd
from workers.backends.measurement import make_measurement
from workers.backends.noise import is_gate
from workers.backends.shift import slot_rules
from workers.errors import ConfigError
from workers.usercircuit import SUPPORTED_GATES, UserCircuit

#: The gates Aer is given: the supported set without the controlled rotations and phase.
#: qiskit-aer 0.18.2 binds those gates' parameters wrongly at run time (a parameterized
#: crx, cry, crz or cp on a batch of binds reads up to 0.38 off in a probability, the same
#: circuit bound beforehand is right: tests/test_circuit_student.py), so Qiskit's transpiler
#: writes them as the rotations and CNOTs they are before Aer sees them.
AER_BASIS = sorted(set(SUPPORTED_GATES) - {"crx", "cry", "crz", "cp"})


class UserAerExecutor:
    """Qiskit Aer on a user's circuit: exact probabilities (``save_probabilities``) of the
    circuit as written with a batch of ``(x, w)`` bound, and of rows of slot angles."""

    name = "aer-public"

    def __init__(self, circuit: UserCircuit, seed: int = 0, max_parallel_threads: int = 0):
        self.circuit = circuit
        self.sim_seconds = 0.0
        self.simulator = AerSimulator(method="statevector", runtime_parameter_bind_enable=True,
                                      max_parallel_threads=max_parallel_threads, seed_simulator=seed)  # fmt: skip
        # The user's gates (Aer reads the distribution, the measurement draws), and the
        # description's gates over slot parameters; see AER_BASIS for what is decomposed.
        slots = circuit.slot_circuit()
        self.transpiled, self.slot_transpiled = (self._for_aer(qc, seed) for qc in (circuit.unmeasured(), slots))
        self._slot_params = list(slots.parameters)  # s[0], s[1], ... in slot order

    @staticmethod
    def _for_aer(qc, seed: int):
        out = transpile(qc, basis_gates=AER_BASIS, optimization_level=0, seed_transpiler=seed)
        out.global_phase = 0  # a parameterized phase, which Aer cannot bind, changes no probability
        out.save_probabilities()
        return out

    def circuit_info(self) -> dict:
        two = sum(1 for inst in self.transpiled.data if is_gate(inst) and len(inst.qubits) == 2)
        depth = int(self.transpiled.depth(filter_function=is_gate))
        return {"layout": "", "transpiled_depth": depth, "two_qubit_gates": two}

    def _run(self, qc, binds: dict) -> np.ndarray:
        present = set(qc.parameters)
        binds = {p: np.ascontiguousarray(v, dtype=np.float64) for p, v in binds.items() if p in present}
        result = self.simulator.run([qc], parameter_binds=[binds]).result()
        if not result.success:
            raise RuntimeError(f"Aer run failed: {result.status}")
        self.sim_seconds += float(result.metadata.get("time_taken_execute", 0.0))
        return np.array([np.asarray(r.data.probabilities, dtype=np.float64) for r in result.results])

    def run_samples(self, x: np.ndarray, w: np.ndarray | None = None) -> np.ndarray:
        """Exact probabilities (B x 2**n) of the user's circuit, B samples sharing ``w``."""
        w = np.zeros(0) if w is None else w
        return self._run(self.transpiled, self.circuit.aer_binds(x, w))

    def run_angles(self, rows: np.ndarray) -> np.ndarray:
        """Exact probabilities (R x 2**n) of R rows of slot angles."""
        rows = np.asarray(rows, dtype=np.float64)
        return self._run(self.slot_transpiled, {p: rows[:, k] for k, p in enumerate(self._slot_params)})


def shift_layout(circuit: UserCircuit) -> tuple[np.ndarray, np.ndarray]:
    """A sample's shifted rows, ``offsets`` (T x slots), and ``coefs`` (slots x T), d p / d slots =
    coefs @ p(angles + offsets): every slot at its rule's first shift, then every slot at its
    second, and so on (a four-term slot's third and fourth after that), today's layout."""
    rules = slot_rules(circuit)
    rows: list[tuple[int, float, float]] = []  # (slot, shift, coefficient)
    for t in range(max((len(r[0]) for r in rules), default=0)):
        rows += [(k, r[0][t], r[1][t]) for k, r in enumerate(rules) if t < len(r[0])]
    offsets, coefs = np.zeros((len(rows), len(rules))), np.zeros((len(rules), len(rows)))
    for i, (k, shift, c) in enumerate(rows):
        offsets[i, k], coefs[k, i] = shift, c
    return offsets, coefs


class UserBackend(Backend):
    """:class:`Backend` over a user circuit's executor: ``probabilities(x, w)`` for the student."""

    @property
    def name(self) -> str:
        return "statevector" if isinstance(self.executor, ComplexStatevectorExecutor) else "aer"

    def _counted(self, probs: np.ndarray) -> np.ndarray:
        self.executions += len(probs)
        self.shots_total += self.shots * len(probs)
        return self.measurement(probs)

    def run_samples(self, x: torch.Tensor, w: torch.Tensor) -> np.ndarray:
        """Measured frequencies (B x 2**n) of B samples sharing ``w``, no gradient."""
        xn, wn = x.detach().cpu().double().numpy(), w.detach().cpu().double().numpy()
        return self._counted(self.executor.run_samples(xn, wn))

    def run_slot_rows(self, angles: np.ndarray) -> np.ndarray:
        """Measured frequencies (R x 2**n) of R rows of slot angles, in one measurement call."""
        return self._counted(self.executor.run_angles(angles))


class UserAutograd(Autograd):
    """Autograd through the complex statevector; probabilities on the CPU, where the head is."""

    def probabilities(self, backend, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return super().probabilities(backend, x, w).cpu()


class SlotShift:
    """The parameter-shift rule over a user circuit's slots, on any executor and measurement."""

    name = "parameter-shift:exact"

    def __init__(self, circuit: UserCircuit):
        self.offsets, self.coefs = shift_layout(circuit)

    def probabilities(self, backend: UserBackend, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() and (x.requires_grad or w.requires_grad):  # see ParameterShift
            return _SlotShiftFunction.apply(x, w, backend, self)
        return torch.as_tensor(backend.run_samples(x, w), dtype=torch.float64)


class _SlotShiftFunction(torch.autograd.Function):
    """Measured forward; backward from the measured shifted rows of the same call."""

    @staticmethod
    def forward(ctx, x, w, backend: UserBackend, rule: SlotShift):
        angles = backend.circuit.angles
        xn, wn = x.detach().cpu().double().numpy(), w.detach().cpu().double().numpy()
        base = angles.numpy(xn, wn)  # (B, S)
        b, s = base.shape
        rows = np.concatenate([base[:, None], base[:, None] + rule.offsets[None]], axis=1)  # (B, 1 + T, S)
        out = backend.run_slot_rows(rows.reshape(-1, s)).reshape(b, 1 + len(rule.offsets), -1)
        d_slot = np.einsum("st,btd->bsd", rule.coefs, out[:, 1:])
        jx, jw = angles.jacobian(xn, wn)
        dx, dw = np.einsum("bsd,bsi->bid", d_slot, jx), np.einsum("bsd,bsj->bjd", d_slot, jw)
        ctx.save_for_backward(torch.as_tensor(dx), torch.as_tensor(dw))
        return torch.as_tensor(out[:, 0], dtype=torch.float64)

    @staticmethod
    def backward(ctx, grad_out):
        jx, jw = ctx.saved_tensors
        g = grad_out.to(jx.dtype)
        return torch.einsum("bid,bd->bi", jx, g), torch.einsum("bjd,bd->j", jw, g), None, None


def make_user_backend(
    name: str,
    circuit: UserCircuit,
    shots: int = 0,
    noise: str | None = None,
    seed: int = 0,
    shift_rule: str = "exact",
    gradient: str | None = None,
    device: str = "cpu",
    max_parallel_threads: int = 0,
    **_ignored,
) -> UserBackend:
    """What :func:`workers.backends.make_backend` builds for a user circuit (same arguments)."""
    if noise:
        raise ConfigError("noise", "noise models do not run user circuits yet")
    if shift_rule not in ("exact", ""):
        raise ConfigError("shift_rule", f"a user circuit takes each gate's exact rule, not {shift_rule!r}")
    if name == "aer":
        executor = UserAerExecutor(circuit, seed=seed, max_parallel_threads=max_parallel_threads)
    elif name == "statevector":
        if device != "cpu" and not torch.cuda.is_available():
            raise ConfigError("device", f"{device!r}: torch sees no GPU")
        executor = ComplexStatevectorExecutor(circuit, device=device)
    else:
        raise ValueError(f"backend: unknown backend {name!r}")
    gradient = gradient or ("autograd" if name == "statevector" and not shots else "parameter-shift")
    grad = UserAutograd() if gradient == "autograd" else SlotShift(circuit)
    return UserBackend(executor, make_measurement(shots, seed), grad)
