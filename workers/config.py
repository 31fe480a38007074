"""The one configuration object of a trial, validated once, at the edge.

Everything a trial does is a function of a :class:`TrialConfig`. The CLI (and,
later, the sweep driver) builds one from user input and calls
:meth:`TrialConfig.validate`; code further in trusts the values it holds.
Bad input raises :class:`ConfigError`, whose message is one line naming the
field and the value, so that the CLI can print it and exit with status 2.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

DATASETS = ("mnist", "fashionmnist", "digits")
TEACHERS = ("none", "lenet", "alexnet", "ensemble")
BACKENDS = ("aer", "statevector")
REDUCTIONS = ("fc", "avgpool", "maxpool", "crop", "pca")
ANSATZE = ("paper", "h-ry", "ry", "hea")
HEADS = ("linear", "log")
KD_FORMS = ("hinton", "convex", "additive")

#: Student samples per class when the user gives none: the paper's 150 for
#: MNIST and FashionMNIST; 80 for digits, whose smallest class (the 8s) has 174
#: images, split in half between train and test by a fixed seed.
DEFAULT_SAMPLES_PER_CLASS = {"mnist": 150, "fashionmnist": 150, "digits": 80}

#: The paper measures every circuit with 5000 shots.
PAPER_SHOTS = 5000


class ConfigError(ValueError):
    """A configuration value that cannot run; the message names the field."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name


@dataclass(frozen=True)
class NoiseSpec:
    """Depolarizing noise after every 1-qubit (p1) and 2-qubit (p2) gate."""

    p1: float
    p2: float


def parse_noise(text: str) -> NoiseSpec:
    """``depolarizing:P1[,P2]``; P2 defaults to 10 x P1."""
    kind, _, args = text.partition(":")
    if kind != "depolarizing" or not args:
        raise ConfigError("noise", f"{text!r}: expected 'depolarizing:P1[,P2]', e.g. depolarizing:0.001")
    try:
        values = [float(v) for v in args.split(",")]
    except ValueError:
        raise ConfigError("noise", f"{text!r}: probabilities must be numbers") from None
    p1 = values[0]
    p2 = values[1] if len(values) > 1 else min(1.0, 10 * p1)
    if not (0 <= p1 <= 1 and 0 <= p2 <= 1) or len(values) > 2:
        raise ConfigError("noise", f"{text!r}: give one or two probabilities in [0, 1]")
    return NoiseSpec(p1, p2)


def parse_classes(spec: str | list[int] | tuple[int, ...], n_total: int = 10) -> tuple[int, ...]:
    """Parse a class subset such as ``0-5``, ``0,3,5`` or ``0-2,7`` into sorted labels."""
    if isinstance(spec, list | tuple):
        labels = [int(x) for x in spec]
    else:
        text = str(spec).strip()
        if not text:
            raise ConfigError("classes", "empty class subset")
        labels = []
        for part in text.split(","):
            part = part.strip()
            try:
                if "-" in part:
                    lo, hi = (int(p) for p in part.split("-", 1))
                    if hi < lo:
                        raise ConfigError("classes", f"range {part!r} runs backwards")
                    labels.extend(range(lo, hi + 1))
                else:
                    labels.append(int(part))
            except ValueError:
                raise ConfigError("classes", f"{spec!r} is not a class subset like '0-5' or '0,3,5'") from None
    if len(set(labels)) != len(labels):
        raise ConfigError("classes", f"{spec!r} names a class twice")
    bad = [c for c in labels if not 0 <= c < n_total]
    if bad:
        raise ConfigError("classes", f"{spec!r}: labels {bad} outside 0..{n_total - 1}")
    if len(labels) < 2:
        raise ConfigError("classes", f"{spec!r}: a classifier needs at least two classes")
    return tuple(sorted(labels))


@dataclass(frozen=True)
class TeacherSettings:
    """How a teacher is trained; hashed into its cache key.

    ``epochs`` of ``None`` means the per-dataset default (enough optimizer steps
    for the tiny ``digits`` set, a few passes over MNIST-sized sets).
    """

    epochs: int | None = None
    lr: float | None = None
    batch_size: int = 128
    seed: int = 0

    def resolved_epochs(self, dataset: str, arch: str) -> int:
        if self.epochs is not None:
            return self.epochs
        if dataset == "digits":  # ~540 images: many passes for enough steps
            return 40 if arch == "lenet" else 20
        return 5 if arch == "lenet" else 3

    def resolved_lr(self, arch: str) -> float:
        if self.lr is not None:
            return self.lr
        # AlexNet's two 4096-wide layers are unstable at LeNet's rate.
        return 1e-4 if arch == "alexnet" else 1e-3


@dataclass(frozen=True)
class TrialConfig:
    """One student trial: the paper's values are the defaults where it gives one."""

    dataset: str = "digits"
    classes: str = "0-5"
    teacher: str = "lenet"
    qubits: int = 3
    temperature: float = 3.0
    lam: float = 0.9
    kd_form: str = "hinton"
    seed: int = 0
    backend: str = "aer"
    #: ``None``: the backend's default (Aer: the paper's 5000; statevector: exact).
    #: ``0``: exact probabilities.
    shots: int | None = None
    noise: str | None = None
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 32
    samples_per_class: int | None = None
    test_samples_per_class: int | None = None
    #: Held-out samples per class from the training split (0: none); a
    #: hyperparameter study scores on these, never on the test split.
    val_samples_per_class: int = 0
    take_available: bool = False
    reduction: str = "fc"
    ansatz: str = "paper"
    layers: int = 2
    head: str = "linear"
    #: ``None``: the head's default (linear: 10, log: 1); see workers.student.
    head_scale: float | None = None
    learn_scale: bool = True
    data_root: str | None = None
    download: bool = True
    cache_dir: str = ".qkd-cache"
    teacher_settings: TeacherSettings = field(default_factory=TeacherSettings)

    # ----------------------------------------------------------------- derived
    @property
    def class_labels(self) -> tuple[int, ...]:
        return parse_classes(self.classes)

    @property
    def n_classes(self) -> int:
        return len(self.class_labels)

    @property
    def effective_shots(self) -> int:
        if self.shots is None:
            return PAPER_SHOTS if self.backend == "aer" else 0
        return self.shots

    @property
    def effective_samples_per_class(self) -> int:
        return self.samples_per_class or DEFAULT_SAMPLES_PER_CLASS[self.dataset]

    @property
    def effective_test_samples_per_class(self) -> int:
        return self.test_samples_per_class or DEFAULT_SAMPLES_PER_CLASS[self.dataset]

    @property
    def effective_ansatz(self) -> str:
        """``paper`` reads as the paper's circuit for the qubit count (see circuits)."""
        if self.ansatz != "paper":
            return self.ansatz
        return "h-ry" if self.qubits == 3 else "ry"

    @property
    def distills(self) -> bool:
        return self.teacher != "none" and self.lam > 0

    # -------------------------------------------------------------- validation
    def validate(self) -> TrialConfig:
        """Check every field once; raise ConfigError naming the first bad one."""

        def choice(name: str, options: tuple[str, ...]) -> None:
            value = getattr(self, name)
            if value not in options:
                raise ConfigError(name, f"unknown value {value!r}; choose one of {list(options)}")

        def positive_int(name: str, value: Any, minimum: int = 1) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(name, f"must be an integer >= {minimum}, got {value!r}")

        choice("dataset", DATASETS)
        choice("teacher", TEACHERS)
        choice("backend", BACKENDS)
        choice("reduction", REDUCTIONS)
        choice("ansatz", ANSATZE)
        choice("head", HEADS)
        choice("kd_form", KD_FORMS)
        labels = self.class_labels  # raises with the field name
        positive_int("qubits", self.qubits, 2)
        if 2**self.qubits < len(labels):
            raise ConfigError(
                "qubits",
                f"{self.qubits} qubits give {2**self.qubits} basis states, "
                f"fewer than the {len(labels)} classes in {self.classes!r}",
            )
        if self.qubits > 10:
            raise ConfigError("qubits", f"{self.qubits} is more than this simulator path supports (10)")
        if not isinstance(self.temperature, int | float) or self.temperature <= 0:
            raise ConfigError("temperature", f"must be > 0, got {self.temperature!r}")
        if not isinstance(self.lam, int | float) or not 0 <= self.lam <= 1:
            raise ConfigError("lam", f"must lie in [0, 1], got {self.lam!r}")
        positive_int("seed", self.seed, 0)
        positive_int("epochs", self.epochs, 1)
        positive_int("batch_size", self.batch_size, 1)
        positive_int("layers", self.layers, 1)
        if not isinstance(self.lr, int | float) or self.lr <= 0:
            raise ConfigError("lr", f"must be > 0, got {self.lr!r}")
        if self.head_scale is not None and self.head_scale <= 0:
            raise ConfigError("head_scale", f"must be > 0, got {self.head_scale!r}")
        if self.shots is not None:
            positive_int("shots", self.shots, 0)
            if self.backend == "statevector" and self.shots > 0:
                raise ConfigError(
                    "shots",
                    f"the statevector backend is exact; got {self.shots} (use shots 0, or backend aer to sample)",
                )
        if self.noise is not None:
            if self.backend != "aer":
                raise ConfigError("noise", "a noise model needs the aer backend")
            parse_noise(self.noise)
        for name in ("samples_per_class", "test_samples_per_class"):
            value = getattr(self, name)
            if value is not None:
                positive_int(name, value, 1)
        positive_int("val_samples_per_class", self.val_samples_per_class, 0)
        ts = self.teacher_settings
        if ts.epochs is not None:
            positive_int("teacher_epochs", ts.epochs, 1)
        positive_int("teacher_seed", ts.seed, 0)
        positive_int("teacher_batch_size", ts.batch_size, 1)
        if ts.lr is not None and ts.lr <= 0:
            raise ConfigError("teacher_lr", f"must be > 0, got {ts.lr!r}")
        return self

    # ---------------------------------------------------------------- identity
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def config_hash(self) -> str:
        """A stable hash of everything that decides the result (not where files go)."""
        d = self.to_dict()
        for k in ("data_root", "download", "cache_dir"):
            d.pop(k)
        d["classes"] = list(self.class_labels)
        d["shots"] = self.effective_shots
        d["ansatz"] = self.effective_ansatz
        d["samples_per_class"] = self.effective_samples_per_class
        d["test_samples_per_class"] = self.effective_test_samples_per_class
        if not self.val_samples_per_class:  # keeps the hashes of runs from before the field existed
            d.pop("val_samples_per_class")
        if not self.distills:  # a baseline is the same experiment whatever T and lam say
            d["temperature"] = d["lam"] = d["kd_form"] = None
        if self.teacher == "none":
            d["teacher_settings"] = None
        blob = json.dumps(d, sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]
