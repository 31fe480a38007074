"""Noise as a config names it, ``depolarizing:P1[,P2]`` or an IBM device's calibration
``fake:NAME``: parsed and checked here, before anything runs.

Validation needs to know that a noise spec means something, fits ``noise_scale`` and (a
device) has the student's qubits, and it needs no torch and no Aer for that; the Aer noise
model is built from the parsed spec where a circuit runs, in :mod:`workers.backends.noise`.
The fake devices are read off qiskit-ibm-runtime, imported only where a device is named.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass

from workers.errors import ConfigError


@dataclass(frozen=True)
class NoiseSpec:
    """Depolarizing noise after every 1-qubit (p1) and 2-qubit (p2) gate."""

    p1: float
    p2: float


@dataclass(frozen=True)
class DeviceNoise:
    """An IBM device's noise from its offline calibration data (``fake:NAME``,
    :mod:`qiskit_ibm_runtime.fake_provider`); built in :mod:`workers.backends.noise`."""

    name: str


#: ``noise: fake:NAME`` names one of qiskit-ibm-runtime's offline fake backends.
DEVICE_PREFIX = "fake:"
#: ``test_noise: none`` scores the test split without noise (``None``: as trained).
NO_NOISE = "none"


@functools.cache
def fake_devices() -> dict[str, type]:
    """The offline fake IBM backends by short name (``manila`` for ``FakeManilaV2``): every
    FakeBackendV2 class that qiskit-ibm-runtime ships, read off the package itself."""
    try:  # loaded only where a device is named: it takes seconds and needs no torch
        fp = importlib.import_module("qiskit_ibm_runtime.fake_provider")
        base = importlib.import_module("qiskit_ibm_runtime.fake_provider.fake_backend").FakeBackendV2
    except ImportError as exc:
        raise ConfigError("noise", f"fake devices need qiskit-ibm-runtime ({exc})") from None
    found = {}
    for cls in vars(fp).values():
        name = getattr(cls, "backend_name", None)
        if isinstance(cls, type) and issubclass(cls, base) and isinstance(name, str):
            found[name.removeprefix("fake_")] = cls
    return dict(sorted(found.items()))


@functools.cache
def device_facts(name: str) -> tuple[int, str, float]:
    """A fake device's qubit count, and the largest error rate its calibration gives any
    instruction (readout included) with that instruction's name: what validation checks,
    built once per device and process (a backend and its target take ~0.2 s, and a
    robustness grid validates each of its points)."""
    device = fake_devices()[name]()
    target = device.target
    rates = [(op, float(props.error)) for op in target.operation_names
             for props in target[op].values() if props is not None and props.error is not None]  # fmt: skip
    op, worst = max(rates, key=lambda r: r[1], default=("none", 0.0))
    return device.num_qubits, op, worst


def parse_noise(text: str) -> NoiseSpec | DeviceNoise:
    """``depolarizing:P1[,P2]`` (P2 defaults to 10 x P1), or ``fake:DEVICE``."""
    kind, _, args = text.partition(":")
    if kind == DEVICE_PREFIX[:-1] and args:
        if args not in fake_devices():
            raise ConfigError("noise", f"{text!r}: unknown device {args!r}; choose one of {list(fake_devices())}")
        return DeviceNoise(args)
    if kind != "depolarizing" or not args:
        raise ConfigError(
            "noise", f"{text!r}: expected 'depolarizing:P1[,P2]' or 'fake:DEVICE', e.g. depolarizing:0.001, fake:manila"
        )
    try:
        values = [float(v) for v in args.split(",")]
    except ValueError:
        raise ConfigError("noise", f"{text!r}: probabilities must be numbers") from None
    p1 = values[0]
    p2 = values[1] if len(values) > 1 else min(1.0, 10 * p1)
    if not (0 <= p1 <= 1 and 0 <= p2 <= 1) or len(values) > 2:
        raise ConfigError("noise", f"{text!r}: give one or two probabilities in [0, 1]")
    return NoiseSpec(p1, p2)


def check_noise(field_name: str, text: str, noise_scale: object, qubits: int) -> None:
    """A noise spec that parses, fits ``noise_scale`` and (a device) has the ``qubits``; the
    field ``field_name`` holds it (``noise`` or ``test_noise``)."""
    spec = parse_noise(text)
    scale = noise_scale if isinstance(noise_scale, int | float) else 1.0
    if isinstance(spec, NoiseSpec) and max(spec.p1, spec.p2) * scale > 1:
        raise ConfigError("noise_scale", f"{scale} x {text!r} gives a probability above 1")
    if isinstance(spec, DeviceNoise):
        size, op, worst = device_facts(spec.name)
        if size < qubits:
            raise ConfigError(field_name, f"{text!r} has {size} qubits, fewer than the student's {qubits}")
        if worst * scale > 1:
            worst_line = f"its worst is {op} at {worst:.4g}, so noise_scale <= {1 / worst:.4g}"
            raise ConfigError("noise_scale", f"{scale:g} x {text!r} gives an error rate above 1 ({worst_line})")
