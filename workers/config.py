"""The one configuration object of a trial, validated once, at the edge.

Everything a trial does is a function of a :class:`TrialConfig`. The CLI (and,
later, the sweep driver) builds one from user input and calls
:meth:`TrialConfig.validate`; code further in trusts the values it holds.
Bad input raises :class:`ConfigError`, whose message is one line naming the
field and the value, so that the CLI can print it and exit with status 2.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Registry(dict):
    """Kinds by name, in the order they were registered: one table per idea (datasets,
    teachers, students), read at call time by validation, the CLI's help and the tables,
    so that :meth:`add` is all a new kind needs here (its builder is registered beside
    the code that builds it: :mod:`workers.data`, :mod:`workers.teachers.models`,
    :mod:`workers.student`; or carried by the kind itself, ``load`` / ``build``, as a
    package's kinds are: :func:`discover_kinds`)."""

    def add(self, kind):
        self[kind.name] = kind
        return kind


@dataclass(frozen=True)
class DatasetKind:
    """A dataset as the rest of the code needs to know it, without loading it; its loader
    is :data:`workers.data.LOADERS` under the same name."""

    name: str
    #: How tables and figures name it.
    label: str
    #: Channels, height, width of every image (what the models are built for).
    shape: tuple[int, int, int]
    #: Student samples per class (train and test) when the config names none.
    samples_per_class: int
    description: str = ""
    #: Labels run 0 .. n_classes - 1 (what a class subset may name).
    n_classes: int = 10
    #: Its loader, for a kind that is not in :data:`workers.data.LOADERS` (a package's):
    #: ``load(data_root, download)`` returns (train_images, train_labels, test_images,
    #: test_labels), arrays or tensors, images N x C x H x W (or N x H x W) floats, labels
    #: integers; a ``PKG.MODULE:CALLABLE`` reference or the callable, resolved when first loaded.
    load: Any = None
    #: ``check(cfg)``: this kind's own rules for a config, raising ConfigError (optional).
    check: Any = None


DATASETS: Registry = Registry()
for _kind in (
    DatasetKind("mnist", "MNIST", (1, 28, 28), 150, "handwritten digits, the IDX files (torchvision MNIST)"),
    DatasetKind("fashionmnist", "FashionMNIST", (1, 28, 28), 150,
                "Zalando's clothing images, the IDX files (torchvision FashionMNIST)"),
    # digits: the smallest class (the 8s) has 174 images, split in half between train and test.
    DatasetKind("digits", "Digits", (1, 28, 28), 80,
                "scikit-learn's bundled 8x8 digits, resized to 28x28 (no download)"),
    DatasetKind("cifar10", "CIFAR10 (gray)", (1, 32, 32), 150,
                "CIFAR10's python batches (torchvision CIFAR10), as luminance (ITU-R 601)"),
    DatasetKind("cifar10-rgb", "CIFAR10", (3, 32, 32), 150,
                "CIFAR10's python batches (torchvision CIFAR10), in colour"),
):  # fmt: skip
    DATASETS.add(_kind)


@dataclass(frozen=True)
class TeacherKind:
    """A teacher as the rest of the code needs to know it; its model is built by
    :data:`workers.teachers.models.MODELS` under the same name (an ensemble has no model:
    it is its members)."""

    name: str
    #: How tables and figures name it.
    label: str
    #: An ensemble's members, in the order their outputs are combined (eq. 16); () for one model.
    members: tuple[str, ...] = ()
    #: Whether it runs a circuit (trained on the exact statevector, then frozen).
    quantum: bool = False
    description: str = ""
    #: Its model, for a kind that is not in :data:`workers.teachers.models.MODELS` (a package's):
    #: ``build(n_classes, image_shape)`` returns a ``torch.nn.Module`` giving N x n_classes
    #: scores; a ``PKG.MODULE:CALLABLE`` reference or the callable, resolved when first built.
    build: Any = None
    #: ``check(cfg)``: this kind's own rules for a config, raising ConfigError (optional).
    check: Any = None


TEACHERS: Registry = Registry()
for _kind in (
    TeacherKind("none", "baseline", description="no teacher: the student alone (the baseline)"),
    TeacherKind("lenet", "LeNet", description="LeNet-5 (ReLU, max-pool; the paper-code recipe: tanh, avg-pool)"),
    TeacherKind("alexnet", "AlexNet", description="the paper's modified AlexNet"),
    TeacherKind("ensemble", "Ensemble", ("lenet", "alexnet"), description="LeNet and AlexNet, softmaxes averaged"),
    TeacherKind("qnn", "QNN 8 qubit", quantum=True,
                description="an 8-qubit amplitude-encoded hea circuit (4 layers, fc reduction), trained exact"),
):  # fmt: skip
    TEACHERS.add(_kind)
#: Executors (workers.backends): Qiskit Aer, or the torch statevector.
BACKENDS = ("aer", "statevector")
#: Gradients (workers.backends.gradient): torch autograd (exact statevector only) or the
#: parameter-shift rule (any executor, any shots).
GRADIENTS = ("autograd", "parameter-shift")
#: Where the torch statevector executor runs.
DEVICES = ("cpu", "cuda")
#: Reductions of an image to features; ``cnn`` (the notebooks' CNN) is the circuit student's only.
REDUCTIONS = ("fc", "avgpool", "maxpool", "crop", "pca", "cnn")
ANSATZE = ("paper", "h-ry", "ry", "hea")
HEADS = ("linear", "log", "sigmoid-pair", "softmax-freqs")
KD_FORMS = ("hinton", "convex", "additive")
#: How the student's samples are picked per class: ``random`` draws by the trial's
#: seed; ``first`` takes the first N of each class in the split's own order (the
#: paper's released notebooks).
SELECTIONS = ("random", "first")
#: Which epoch's model a row reports. ``best_test`` is model selection on the test
#: split: it exists only to replicate the paper's notebooks and is labelled wherever
#: it appears; ``best_val`` selects on the held-out validation split.
REPORT_EPOCHS = ("last", "best_val", "best_test")
#: Parameter-shift rules: ``exact`` is (f(t + pi/2) - f(t - pi/2)) / 2; ``pi4-unnormalized``
#: is the released notebooks' f(t + pi/4) - f(t - pi/4), sqrt(2) times the gradient.
SHIFT_RULES = ("exact", "pi4-unnormalized")
#: The released notebooks' defects in the distillation term, reproducible only by name:
#: ``teacher-ce`` adds CE(teacher logits, labels), a constant that sends the student no
#: gradient (both LeNet -> 4-qubit notebooks); ``zeroed`` adds 0 x the term (FashionMNIST
#: LeNet -> 3-qubit 0-7); ``six-classes`` scales it by 6 / C instead of C / C (FashionMNIST
#: AlexNet -> 3-qubit 0-7, where C = 8).
KD_DEFECTS = ("none", "teacher-ce", "zeroed", "six-classes")
#: Teacher training recipes (workers.teachers): ``default`` is this project's (ReLU
#: LeNet, AlexNet at lr 1e-4, a few epochs, inputs normalized, last epoch kept);
#: ``paper-code`` is the released notebooks' (classic tanh / avg-pool LeNet-5, both at
#: lr 1e-3 for 10 epochs, pixels in [0, 1], the epoch with the best test accuracy kept).
TEACHER_RECIPES = ("default", "paper-code")
#: The members of the ``ensemble`` teacher (TEACHERS["ensemble"].members).
ENSEMBLE_MEMBERS = TEACHERS["ensemble"].members


def members_of(arch: str) -> tuple[str, ...]:
    """The members teacher ``arch`` is assembled from; () for a teacher that is one model
    (a reference to the user's model is one)."""
    return teacher_kind(arch).members


def teacher_kind(name: str) -> TeacherKind:
    """The registered kind ``name``, or for a reference (``PKG.MODULE:CALLABLE``,
    ``torchvision:NAME``) a kind of one model labelled with the reference itself."""
    if name in TEACHERS or ":" not in str(name):
        return TEACHERS[name]
    return TeacherKind(name, name, description="the user's model", build=name)


def dataset_kind(name: str) -> DatasetKind:
    """The registered kind ``name``, or for a reference the kind its arrays describe
    (their image shape, labels and smallest class), loaded once per process."""
    if name in DATASETS or ":" not in str(name):
        return DATASETS[name]
    return user_dataset(name)[0]


def n_labels(dataset: str) -> int:
    """How many labels the dataset's classes run over (10 for the built-in sets)."""
    return dataset_kind(dataset).n_classes


def trained_as_one(arch: str, recipe: str) -> bool:
    """Whether teacher ``arch`` is one trained model under ``recipe``; else it is an
    ensemble assembled from trained members (eq. 16). The paper-code recipe trains its
    ensemble as one model, as the released notebooks did."""
    return not members_of(arch) or recipe == "paper-code"


#: Which epoch of a teacher's training is kept: its last (what the notebooks saved and
#: distilled from), or the one with the best accuracy on the test split (what they printed).
TEACHER_KEEPS = ("last", "best_test")

#: How a teacher's Adam steps run: torch's per-tensor loop (``adam``, what every cached
#: teacher so far was trained with), or its fused kernel (``adam-fused``: the same update,
#: rounded differently; an AlexNet step on CPU 2.1 s -> 1.5 s on the dev VM, the update
#: itself 0.65 s -> 0.09 s, docs/performance.md). Part of the cache key.
TEACHER_OPTIMIZERS = ("adam", "adam-fused")


def parse_per_teacher(field: str, text: object, value: Callable[[str], Any], what: str) -> tuple[Any, dict[str, Any]]:
    """A default and per-architecture values, ``DEFAULT,ARCH=VALUE,...`` (either part may be
    left out): the value for every teacher, and the ones that differ by name. ``value``
    parses one value, raising ValueError; ``what`` says what a value is, for the one line."""
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(field, f"unknown value {text!r}; {what}")
    default, by_arch = None, {}
    for i, part in enumerate(p.strip() for p in text.split(",")):
        arch, eq, raw = part.rpartition("=")
        if eq and arch not in TEACHERS and ":" not in arch:
            raise ConfigError(field, f"{part!r} names no teacher; choose from {list(TEACHERS)}")
        if not eq and i > 0:
            raise ConfigError(field, f"{part!r}: after the default, give ARCH=VALUE; {what}")
        try:
            parsed = value(raw.strip())
        except (TypeError, ValueError):
            raise ConfigError(field, f"unknown value {raw!r}; {what} (or ARCH=VALUE after the default)") from None
        if eq:
            by_arch[arch] = parsed
        else:
            default = parsed
    return default, by_arch


def _optimizer_value(text: str) -> str:
    if text not in TEACHER_OPTIMIZERS:
        raise ValueError(text)
    return text


def _positive(kind: type) -> Callable[[str], Any]:
    def parse(text: str):
        v = kind(text)
        if not (v > 0) or (kind is float and not math.isfinite(v)):
            raise ValueError(text)
        return v

    return parse


def parse_optimizer(text: object) -> tuple[str, dict[str, str]]:
    """``adam``, or a default and per-architecture choices, ``adam,alexnet=adam-fused``: the
    optimizer for every teacher, and the ones that differ by name (so that a spec's AlexNet
    takes the fused kernel while its LeNet keeps the key it was cached under)."""
    default, by_arch = parse_per_teacher("teacher_optimizer", text, _optimizer_value,
                                         f"choose one of {list(TEACHER_OPTIMIZERS)}")  # fmt: skip
    return default or "adam", by_arch


def parse_teacher_number(field: str, value: object, kind: type) -> tuple[Any, dict[str, Any]]:
    """A teacher's ``epochs`` or ``lr``: ``None`` (the recipe's default), a number, or a
    default and per-architecture numbers, ``"10,alexnet=5"`` (:func:`parse_per_teacher`)."""
    if value is None:
        return None, {}
    if isinstance(value, str):
        return parse_per_teacher(field, value, _positive(kind), f"a number > 0{' (whole)' if kind is int else ''}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(field, f"must be a number or DEFAULT,ARCH=VALUE, got {value!r}")
    return value, {}


@dataclass(frozen=True)
class StudentKind:
    """What the rest of the code needs to know of a student kind, without building one.

    The builders live in :mod:`workers.student` under the same names (a test holds
    the two together); this table is here so that validation and the CLI need no torch.
    """

    name: str
    #: Whether a circuit runs (False: a classical control, no backend, no shots).
    quantum: bool
    #: The head used when the config names none.
    default_head: str
    #: Whether ``reduction``, ``ansatz`` and ``layers`` mean anything for it.
    uses_reduction: bool
    #: The circuit's name in result rows when the kind fixes it (else the ansatz).
    fixed_circuit: str = ""
    description: str = ""
    #: Whether it runs the user's circuit the ``circuit`` field names (its ansatz column is that reference).
    user_circuit: bool = False
    #: How tables name it, a format of ``q`` (qubits), ``d`` (2**q) and ``p`` (parameters);
    #: "" for the built-in names (sweep.tables.common.STUDENT_NAMES).
    label: str = ""
    #: Its builder, for a kind that is not in :data:`workers.student.BUILDERS` (a package's):
    #: ``build(cfg, train_images, seed, shot_seed)`` returns a :class:`workers.student.StudentModel`;
    #: a ``PKG.MODULE:CALLABLE`` reference or the callable, resolved when first built.
    build: Any = None
    #: ``check(cfg)``: this kind's own rules for a config, raising ConfigError (optional).
    check: Any = None


STUDENT_KINDS: Registry = Registry()
for _kind in (
        StudentKind("amplitude", True, "linear", True, "",
                    "reduction to 2^Q features, amplitude encoding, trainable ansatz (the paper's text)"),
        StudentKind("cnn-angle", True, "sigmoid-pair", False, "h-angle",
                    "CNN to Q angles pi*tanh(x), H then Ry(angle) per qubit, no trainable gate "
                    "(the paper's released notebooks)"),
        StudentKind("cnn-classical", False, "sigmoid-pair", False, "",
                    "the cnn-angle front-end with a classical layer Q -> 2^Q and a softmax in place "
                    "of the circuit (a control)"),
        StudentKind("classical", False, "linear", True, "linear-softmax",
                    "the amplitude student with a classical layer 2^Q -> 2^Q and a softmax in place of "
                    "the circuit: the same reduction and head, its parameter count within a few percent "
                    "of the quantum student's"),
        StudentKind("circuit", True, "linear", True, "",
                    "a user's Qiskit circuit (circuit: PKG.MODULE:CALLABLE): the reduction to len(x) features "
                    "and pi*tanh, or reduction cnn (the notebooks' CNN), then the circuit and the head",
                    user_circuit=True),
):  # fmt: skip
    STUDENT_KINDS.add(_kind)
STUDENTS = STUDENT_KINDS

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
                    if lo < 0 or hi >= n_total:  # checked before the range is built: 0-99999999999
                        raise ConfigError("classes", f"{spec!r}: range {part!r} runs outside 0..{n_total - 1}")
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

    #: A number, or a default and per-architecture values, ``"10,alexnet=5"``
    #: (:func:`parse_teacher_number`); ``None``: the recipe's default.
    epochs: int | str | None = None
    lr: float | str | None = None
    batch_size: int = 128
    seed: int = 0
    recipe: str = "default"
    #: Which epoch's weights are kept. The notebooks print their best test epoch but
    #: save the last one (a state_dict kept by reference), and distil from that: so
    #: both recipes keep ``last`` unless told ``best_test``; a paper-code teacher's row
    #: reports both accuracies.
    keep: str = "last"
    #: One of :data:`TEACHER_OPTIMIZERS`, or a default and per-architecture choices
    #: (``adam,alexnet=adam-fused``; :func:`parse_optimizer`).
    optimizer: str = "adam"

    def resolved_optimizer(self, arch: str) -> str:
        """The optimizer ``arch`` is trained with (what its cache key records)."""
        default, by_arch = parse_optimizer(self.optimizer)
        return by_arch.get(arch, default)

    @property
    def resolved_keep(self) -> str:
        return self.keep

    @property
    def normalize(self) -> bool:
        """Whether the teacher sees images normalized by the training split's mean and std."""
        return self.recipe != "paper-code"

    def resolved_epochs(self, dataset: str, arch: str) -> int:
        default, by_arch = parse_teacher_number("teacher_epochs", self.epochs, int)
        if arch in by_arch:
            return by_arch[arch]
        if default is not None:
            return default
        if self.recipe == "paper-code":
            return 10
        if dataset == "digits":  # ~540 images: many passes for enough steps
            return 40 if arch == "lenet" else 20
        return 5 if arch == "lenet" else 3

    def resolved_lr(self, arch: str) -> float:
        default, by_arch = parse_teacher_number("teacher_lr", self.lr, float)
        if arch in by_arch:
            return by_arch[arch]
        if default is not None:
            return default
        if self.recipe == "paper-code":
            return 1e-3
        # AlexNet's two 4096-wide layers are unstable at LeNet's rate.
        return 1e-4 if arch == "alexnet" else 1e-3


@dataclass(frozen=True)
class TrialConfig:
    """One student trial: the paper's values are the defaults where it gives one.

    ``None`` (and ``ansatz: paper``) mean "the default for the rest of the
    configuration"; :meth:`resolved` turns every one of them into its value, and the
    config hash and the result columns are both read off that one resolved form.
    """

    dataset: str = "digits"
    classes: str = "0-5"
    teacher: str = "lenet"
    qubits: int = 3
    temperature: float = 3.0
    lam: float = 0.9
    kd_form: str = "hinton"
    #: A released notebook's defect in the distillation term (KD_DEFECTS); ``none`` is correct.
    kd_defect: str = "none"
    seed: int = 0
    #: The student kind (STUDENT_KINDS): what turns an image into class scores.
    student: str = "amplitude"
    #: The user's circuit of ``student: circuit``, ``PKG.MODULE:CALLABLE`` (workers.usercircuit).
    circuit: str = ""
    backend: str = "aer"
    #: ``None``: the backend's default (Aer: the paper's 5000; statevector: exact).
    #: ``0``: exact probabilities.
    shots: int | None = None
    noise: str | None = None
    #: The noise the test (and validation) split is scored under: ``None`` as in training,
    #: ``none`` without noise, or a noise spec of its own (trained clean, deployed noisy).
    test_noise: str | None = None
    #: Multiplies every error rate of the noise models (train and test); 0 is noise-free.
    noise_scale: float = 1.0
    #: The parameter-shift rule (SHIFT_RULES), where the gradient is parameter-shift.
    shift_rule: str = "exact"
    #: ``None``: autograd on the exact statevector, parameter-shift otherwise (GRADIENTS).
    gradient: str | None = None
    #: Where the statevector executor runs (DEVICES); not part of the result's identity.
    device: str = "cpu"
    epochs: int = 10
    lr: float = 1e-3
    batch_size: int = 32
    samples_per_class: int | None = None
    test_samples_per_class: int | None = None
    #: Held-out samples per class from the training split (0: none); a
    #: hyperparameter study scores on these, never on the test split.
    val_samples_per_class: int = 0
    take_available: bool = False
    #: ``random`` (by seed) or ``first`` N per class in split order.
    selection: str = "random"
    #: Images normalized by the training split's mean and std (else pixels in [0, 1]).
    normalize: bool = True
    #: Which epoch's numbers the row reports (REPORT_EPOCHS).
    report_epoch: str = "last"
    #: ``None``: ``fc`` for the amplitude student (the CNN students have their own front-end).
    reduction: str | None = None
    ansatz: str = "paper"
    layers: int = 2
    #: ``None``: the student kind's default head.
    head: str | None = None
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
        known = self.dataset in DATASETS or (isinstance(self.dataset, str) and ":" in self.dataset)
        return parse_classes(self.classes, n_labels(self.dataset) if known else 10)

    @property
    def n_classes(self) -> int:
        return len(self.class_labels)

    @property
    def kind(self) -> StudentKind:
        return STUDENT_KINDS[self.student]

    @property
    def effective_shots(self) -> int:
        if not self.kind.quantum:
            return 0
        if self.shots is None:
            return PAPER_SHOTS if self.backend == "aer" else 0
        return self.shots

    @property
    def effective_gradient(self) -> str:
        """Autograd where it is exact (the statevector without shots), else parameter-shift;
        empty for a student that runs no circuit."""
        if not self.kind.quantum:
            return ""
        if self.gradient is not None:
            return self.gradient
        return "autograd" if self.backend == "statevector" and not self.effective_shots else "parameter-shift"

    @property
    def effective_samples_per_class(self) -> int:
        return self.samples_per_class or dataset_kind(self.dataset).samples_per_class

    @property
    def effective_test_samples_per_class(self) -> int:
        return self.test_samples_per_class or dataset_kind(self.dataset).samples_per_class

    @property
    def effective_ansatz(self) -> str:
        """``paper`` reads as the paper's circuit for the qubit count (see circuits)."""
        if self.kind.user_circuit:
            return self.circuit
        if self.kind.fixed_circuit or not self.kind.uses_reduction:
            return self.kind.fixed_circuit
        if self.ansatz != "paper":
            return self.ansatz
        return "h-ry" if self.qubits == 3 else "ry"

    @property
    def effective_head(self) -> str:
        if self.head is None and self.kind.user_circuit and self.reduction == "cnn":
            return "sigmoid-pair"  # the notebooks' front-end takes the notebooks' head, as cnn-angle does
        return self.head or self.kind.default_head

    @property
    def distills(self) -> bool:
        return self.teacher != "none" and self.lam > 0

    @property
    def effective_test_noise(self) -> str | None:
        """The noise the test and validation splits are scored under (None: none)."""
        if self.test_noise is None:
            return self.noise
        return None if self.test_noise == NO_NOISE else self.test_noise

    @property
    def uses_qiskit(self) -> bool:
        """Whether this trial builds a circuit for Qiskit (an Aer executor, for training or for
        scoring under a noise), or a user's circuit (``student: circuit``, compiled with Qiskit on
        either backend); a torch statevector trial of a built-in circuit never imports it."""
        aer = self.backend == "aer" or bool(self.noise) or self.effective_test_noise is not None
        return aer or self.kind.user_circuit

    @property
    def selects_on_test(self) -> bool:
        """Whether a number of this trial was chosen by looking at the test split
        (its reported epoch, or the epoch its teacher kept)."""
        teacher_on_test = self.teacher != "none" and self.teacher_settings.resolved_keep == "best_test"
        return self.report_epoch == "best_test" or (self.distills and teacher_on_test)

    def resolved(self) -> TrialConfig:
        """This configuration with every default decided: what actually runs.

        Settings that mean nothing for the student kind (the reduction and ansatz of a
        CNN student, the backend and shots of a classical one, the head scale of the
        sigmoid-pair head) are blanked, so that two configs that run the same experiment
        resolve, and hash, alike.
        """
        kind = self.kind
        head = self.effective_head
        ansatz = self.effective_ansatz
        scaled = head in DEFAULT_HEAD_SCALE
        # test_noise is None wherever it is what training ran (so spelling it out hashes alike),
        # and noise_scale is 1 where no noise model runs at all.
        test_noise = self.effective_test_noise
        noisy = self.noise is not None or test_noise is not None
        return dataclasses.replace(
            self,
            test_noise=None if test_noise == self.noise else (test_noise or NO_NOISE),
            noise_scale=float(self.noise_scale) if noisy else 1.0,
            backend=self.backend if kind.quantum else "",
            shots=self.effective_shots,
            gradient=self.effective_gradient,
            shift_rule=self.shift_rule if self.effective_gradient == "parameter-shift" else "",
            samples_per_class=self.effective_samples_per_class,
            test_samples_per_class=self.effective_test_samples_per_class,
            reduction=(self.reduction or "fc") if kind.uses_reduction else "",
            ansatz=ansatz,
            layers=self.layers if ansatz == "hea" else 1,
            head=head,
            head_scale=(self.head_scale or DEFAULT_HEAD_SCALE[head]) if scaled else None,
            learn_scale=self.learn_scale if scaled else False,
        )

    # -------------------------------------------------------------- validation
    def validate(self) -> TrialConfig:
        """Check every field once; raise ConfigError naming the first bad one."""

        def choice(name: str, options: tuple[str, ...], value: Any = None, refs: bool = False) -> None:
            value = getattr(self, name) if value is None else value
            if not isinstance(value, str) or value not in options:
                more = ", or a reference PKG.MODULE:CALLABLE" if refs else ""
                raise ConfigError(name, f"unknown value {value!r}; choose one of {list(options)}{more}")

        def positive_int(name: str, value: Any, minimum: int = 1) -> None:
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise ConfigError(name, f"must be an integer >= {minimum}, got {value!r}")

        if _is_ref(self.dataset):
            dataset_kind(self.dataset)  # loaded (once per process) and checked: one line naming dataset
        else:
            choice("dataset", DATASETS, refs=True)
        if not _is_ref(self.teacher):
            choice("teacher", TEACHERS, refs=True)
        choice("student", STUDENTS)
        choice("backend", BACKENDS)
        if self.reduction is not None:
            choice("reduction", REDUCTIONS)
        choice("ansatz", ANSATZE)
        if self.head is not None:
            choice("head", HEADS)
        choice("kd_form", KD_FORMS)
        choice("kd_defect", KD_DEFECTS)
        if self.kd_defect != "none" and not self.distills:
            raise ConfigError("kd_defect", f"{self.kd_defect!r} is a defect of a distillation term; there is none here")
        choice("selection", SELECTIONS)
        choice("report_epoch", REPORT_EPOCHS)
        choice("shift_rule", SHIFT_RULES)
        kind = self.kind
        if not kind.uses_reduction:
            if self.reduction is not None:
                raise ConfigError("reduction", f"the {self.student} student has its own CNN front-end; leave it unset")
            if self.ansatz != "paper":
                raise ConfigError("ansatz", f"the {self.student} student's circuit is fixed; leave it unset")
        elif kind.fixed_circuit and self.ansatz != "paper":
            raise ConfigError("ansatz", f"the {self.student} student runs no circuit; leave it unset")
        elif kind.user_circuit and self.ansatz != "paper":
            raise ConfigError("ansatz", f"the {self.student} student runs the circuit the field circuit names; "
                              "leave ansatz unset")  # fmt: skip
        if self.reduction == "cnn" and not kind.user_circuit:
            raise ConfigError("reduction", f"cnn is the circuit student's front-end, not the {self.student} student's")
        if not isinstance(self.circuit, str):
            raise ConfigError("circuit", f"must be a PKG.MODULE:CALLABLE reference, got {self.circuit!r}")
        if self.circuit and not kind.user_circuit:
            raise ConfigError("circuit", f"only the circuit student runs a user circuit, not the {self.student} "
                              "student; leave it unset")  # fmt: skip
        if kind.user_circuit and not self.circuit:
            raise ConfigError("circuit", "the circuit student needs a reference PKG.MODULE:CALLABLE to its circuit")
        if _is_ref(self.dataset):
            self._check_user_classes()
        labels = self.class_labels  # raises with the field name
        for model in (self.teacher, *members_of(self.teacher)):  # a package's ensemble may name references
            if _is_ref(model) and model not in TEACHERS:  # built once, run on a batch of two images
                user_teacher(model, len(labels), dataset_kind(self.dataset).shape)
        positive_int("qubits", self.qubits, 2)
        if self.qubits > 10:  # before 2**qubits, which for 10**15 qubits would not finish
            raise ConfigError("qubits", f"{self.qubits} is more than this simulator path supports (10)")
        if 2**self.qubits < len(labels):
            raise ConfigError(
                "qubits",
                f"{self.qubits} qubits give {2**self.qubits} basis states, "
                f"fewer than the {len(labels)} classes in {self.classes!r}",
            )
        if kind.user_circuit:
            n_x = user_circuit(self.circuit, self.qubits).n_x  # compiled once per (reference, qubits) and process
            self._check_encoder(n_x)
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
        if self.gradient is not None:
            choice("gradient", GRADIENTS)
            if not kind.quantum:
                raise ConfigError("gradient", f"the {self.student} student runs no circuit; leave it unset")
            if self.gradient == "autograd" and self.backend != "statevector":
                raise ConfigError("gradient", f"autograd needs the statevector backend, not {self.backend!r}")
            if self.gradient == "autograd" and self.effective_shots:
                raise ConfigError(
                    "gradient",
                    f"autograd differentiates exact probabilities; with shots {self.effective_shots} "
                    "use parameter-shift, or set shots 0",
                )
        if self.shift_rule != "exact" and self.effective_gradient != "parameter-shift":
            raise ConfigError("shift_rule", "applies to parameter-shift gradients only (set gradient parameter-shift)")
        if self.shift_rule != "exact" and kind.user_circuit:
            raise ConfigError("shift_rule", f"a user circuit takes each gate's exact rule, not {self.shift_rule!r}")
        if kind.user_circuit and (self.noise is not None or self.test_noise not in (None, NO_NOISE)):
            raise ConfigError("noise" if self.noise is not None else "test_noise",
                              "noise models do not run user circuits yet (student circuit)")  # fmt: skip
        choice("device", DEVICES)
        if self.device != "cpu" and (self.backend != "statevector" or not kind.quantum):
            raise ConfigError("device", "only the statevector backend runs on a GPU (aer: qiskit-aer-gpu, see docs)")
        if self.noise is not None:
            if not kind.quantum:
                raise ConfigError("noise", f"the {self.student} student runs no circuit")
            if self.backend != "aer":
                raise ConfigError("noise", "a noise model needs the aer backend")
            self._check_noise("noise", self.noise)
        if isinstance(self.noise_scale, bool) or not isinstance(self.noise_scale, int | float):
            raise ConfigError("noise_scale", f"must be a number >= 0, got {self.noise_scale!r}")
        if not (math.isfinite(self.noise_scale) and self.noise_scale >= 0):
            raise ConfigError("noise_scale", f"must be a number >= 0, got {self.noise_scale!r}")
        if self.test_noise is not None:
            if not isinstance(self.test_noise, str):
                raise ConfigError("test_noise", f"must be a noise spec or {NO_NOISE!r}, got {self.test_noise!r}")
            if not kind.quantum:
                raise ConfigError("test_noise", f"the {self.student} student runs no circuit")
            if self.test_noise != NO_NOISE:
                if self.backend != "aer":
                    raise ConfigError("test_noise", "a noise model needs the aer backend")
                try:
                    self._check_noise("test_noise", self.test_noise)
                except ConfigError as exc:
                    if exc.field != "noise":
                        raise
                    raise ConfigError("test_noise", str(exc).removeprefix("noise: ")) from None
        for name in ("samples_per_class", "test_samples_per_class"):
            value = getattr(self, name)
            if value is not None:
                positive_int(name, value, 1)
        positive_int("val_samples_per_class", self.val_samples_per_class, 0)
        if self.report_epoch == "best_val" and not self.val_samples_per_class:
            raise ConfigError("report_epoch", "best_val needs a validation split; set val_samples_per_class >= 1")
        ts = self.teacher_settings
        if ts.epochs is not None and not isinstance(ts.epochs, str):
            positive_int("teacher_epochs", ts.epochs, 1)
        parse_teacher_number("teacher_epochs", ts.epochs, int)
        positive_int("teacher_seed", ts.seed, 0)
        positive_int("teacher_batch_size", ts.batch_size, 1)
        if isinstance(ts.lr, (int, float)) and not isinstance(ts.lr, bool) and ts.lr <= 0:
            raise ConfigError("teacher_lr", f"must be > 0, got {ts.lr!r}")
        parse_teacher_number("teacher_lr", ts.lr, float)
        choice("teacher_recipe", TEACHER_RECIPES, ts.recipe)
        choice("teacher_keep", TEACHER_KEEPS, ts.keep)
        parse_optimizer(ts.optimizer)
        if teacher_kind(self.teacher).quantum and ts.recipe != "default":
            raise ConfigError(
                "teacher_recipe", f"the {self.teacher} teacher has only the default recipe, not {ts.recipe!r}"
            )
        for own in (dataset_kind(self.dataset), teacher_kind(self.teacher), kind):  # a kind's own rules
            if own.check is not None:
                _run_check(own, self)
        return self

    def _check_user_classes(self) -> None:
        """The class subset names classes that the user's dataset has, in both of its splits."""
        kind, raw, _ = user_dataset(self.dataset)
        labels = parse_classes(self.classes, 2**31)
        if max(labels) >= kind.n_classes:
            raise ConfigError("classes", f"{self.classes!r} asks for class {max(labels)}, but {self.dataset} has "
                              f"{kind.n_classes} classes (labels 0..{kind.n_classes - 1})")  # fmt: skip
        for split, y in (("train", raw[1]), ("test", raw[3])):
            missing = sorted(set(labels) - {int(c) for c in set(y.tolist())})
            if missing:
                raise ConfigError("classes", f"{self.classes!r}: {self.dataset} has no {split} images of "
                                  f"class{'es' * (len(missing) > 1)} {', '.join(map(str, missing))}")  # fmt: skip

    def _check_encoder(self, n_x: int) -> None:
        """The circuit student's reduction can give its len(x) = ``n_x`` features."""
        _, height, width = dataset_kind(self.dataset).shape
        if self.reduction == "crop":
            h = max(d for d in range(1, math.isqrt(n_x) + 1) if n_x % d == 0)  # workers.student.feature_grid
            if h > height or n_x // h > width:
                raise ConfigError("reduction", f"crop: {self.circuit}'s {n_x} inputs make a {h} x {n_x // h} patch, "
                                  f"larger than the {height} x {width} images")  # fmt: skip
        if self.reduction == "pca" and isinstance(self.samples_per_class, int | None):
            train = self.effective_samples_per_class * len(self.class_labels)
            if n_x > train:
                raise ConfigError("reduction", f"pca: {self.circuit}'s {n_x} inputs are more components than "
                                  f"the {train} training images give")  # fmt: skip

    def _check_noise(self, name: str, text: str) -> None:
        """A noise spec that parses, fits ``noise_scale`` and (a device) has the qubits."""
        spec = parse_noise(text)
        scale = self.noise_scale if isinstance(self.noise_scale, int | float) else 1.0
        if isinstance(spec, NoiseSpec) and max(spec.p1, spec.p2) * scale > 1:
            raise ConfigError("noise_scale", f"{scale} x {text!r} gives a probability above 1")
        if isinstance(spec, DeviceNoise):
            size, op, worst = device_facts(spec.name)
            if size < self.qubits:
                raise ConfigError(name, f"{text!r} has {size} qubits, fewer than the student's {self.qubits}")
            if worst * scale > 1:
                worst_line = f"its worst is {op} at {worst:.4g}, so noise_scale <= {1 / worst:.4g}"
                raise ConfigError("noise_scale", f"{scale:g} x {text!r} gives an error rate above 1 ({worst_line})")

    # ---------------------------------------------------------------- identity
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """What decides the result, from the resolved form: no paths, and nothing a
        setting makes moot (T and λ of a baseline, a baseline's teacher settings)."""
        d = self.resolved().to_dict()
        for k in ("data_root", "download", "cache_dir", "device"):
            d.pop(k)
        # The gradient is left out where it is what the backend and shots always meant
        # (before it was a setting of its own), so that those runs keep their hashes.
        if d["gradient"] == ("autograd" if d["backend"] == "statevector" and not d["shots"] else "parameter-shift"):
            d.pop("gradient")
        elif d["gradient"] == "":
            d.pop("gradient")
        d["classes"] = list(self.class_labels)
        if not self.distills:  # a baseline is the same experiment whatever T and lam say
            d["temperature"] = d["lam"] = d["kd_form"] = d["kd_defect"] = None
        if self.teacher == "none":
            d["teacher_settings"] = None
        # Fields added after the first results were written are left out at their
        # defaults, so that those runs keep the hashes they were written with.
        for name, defaults in _LATER_FIELDS.items():
            if d.get(name) in defaults:
                d.pop(name)
        if d["teacher_settings"] is not None:
            # The optimizer this trial's teacher takes, so a per-architecture choice leaves
            # the other teachers' trials with the hashes they had.
            d["teacher_settings"]["optimizer"] = self.teacher_settings.resolved_optimizer(self.teacher)
            # Per-architecture epochs and rates likewise: this trial's teacher's (an ensemble
            # assembled from its members keeps the whole text: its members' values decide it).
            ts = self.teacher_settings
            if trained_as_one(self.teacher, ts.recipe) if self.teacher in TEACHERS else True:
                if isinstance(ts.epochs, str):
                    d["teacher_settings"]["epochs"] = ts.resolved_epochs(self.dataset, self.teacher)
                if isinstance(ts.lr, str):
                    d["teacher_settings"]["lr"] = ts.resolved_lr(self.teacher)
            for name, default in (("recipe", "default"), ("keep", "last"), ("optimizer", "adam")):
                if d["teacher_settings"].get(name) == default:
                    d["teacher_settings"].pop(name)
        return d

    def config_hash(self) -> str:
        """A stable hash of everything that decides the result (not where files go)."""
        blob = json.dumps(self.identity(), sort_keys=True, default=str).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


#: One line of help per field: the CLI makes its ``qkd-sweep trial`` options from the
#: fields and these (a new field is one line here, and a test holds every field to one).
FIELD_HELP: dict[str, str] = {
    "dataset": "the dataset",
    "classes": "class subset: 0-5, 0-7, 0,3,5, 0-2,7",
    "teacher": "none (baseline), or the teacher distilled from",
    "qubits": "register size; 2^qubits must be at least the number of classes",
    "temperature": "distillation temperature T",
    "lam": "weight of the distillation term (0: baseline)",
    "kd_form": "loss form (see workers.distill)",
    "kd_defect": "reproduce a released notebook's broken distillation term by name",
    "seed": "data, initialization, dropout, batch order and shots all derive from it",
    "student": "; ".join(f"{k.name}: {k.description}" for k in STUDENT_KINDS.values()),
    "circuit": "the circuit student's circuit, PKG.MODULE:CALLABLE: called with the qubit count, it returns a "
    "qiskit.QuantumCircuit over ParameterVectors x (data) and w (weights); see README",
    "backend": "simulator: aer (Qiskit Aer), or statevector (torch; exact, or sampled with shots)",
    "shots": "shots per circuit; 0 = exact probabilities (default: 5000 on aer, exact on statevector)",
    "noise": "Aer noise model: depolarizing:P1[,P2], or an IBM device's calibration, fake:NAME (e.g. fake:manila)",
    "test_noise": "noise the test and validation splits are scored under (default: as trained; none: noise-free)",
    "noise_scale": "multiplies every error rate of the noise models (0: noise-free, 2: twice the errors)",
    "shift_rule": "parameter-shift rule: exact (+-pi/2, halved) or the notebooks' unnormalized +-pi/4",
    "gradient": "autograd (exact statevector only) or parameter-shift (any backend, any shots); "
    "default: autograd where exact, else parameter-shift",
    "device": "where the statevector backend runs: cpu, or cuda when torch sees a GPU",
    "epochs": "student training epochs",
    "lr": "student learning rate (Adam)",
    "batch_size": "student batch size",
    "samples_per_class": "student training samples per class (default: 150 for mnist/fashionmnist, 80 for digits)",
    "test_samples_per_class": "student test samples per class (same defaults)",
    "val_samples_per_class": "held-out validation samples per class from the training split (0: none)",
    "take_available": "take what a class has when it has fewer samples than asked, instead of failing",
    "selection": "student samples per class: random (by seed) or the first N in split order (the notebooks)",
    "normalize": "normalize images by the training split's mean/std (off: pixels in [0, 1], the notebooks)",
    "report_epoch": "the epoch a row reports; best_test selects on the test split (only to replicate the paper)",
    "reduction": "the amplitude student's reduction to 2^Q features (default fc); the circuit student's to "
    "len(x) features, or cnn (the notebooks' CNN)",
    "ansatz": "the amplitude student's circuit; paper = h-ry on 3 qubits, ry otherwise",
    "layers": "layers of the hea ansatz",
    "head": "probabilities -> scores (workers.student; default linear, sigmoid-pair for the CNN students)",
    "head_scale": "initial logit scale of the linear (10) and log (1) heads",
    "learn_scale": "learn the logit scale of the linear and log heads",
    "data_root": "folder holding MNIST/raw and FashionMNIST/raw (default: $QKD_DATA_ROOT or ./data)",
    "download": "download missing data files (online only)",
    "cache_dir": "teacher cache",
    "teacher_settings": "how the teacher is trained (TEACHER_HELP)",
}
#: The same for the teacher's training settings (the CLI prefixes them with ``teacher-``).
TEACHER_HELP: dict[str, str] = {
    "epochs": "teacher training epochs (default: per dataset, architecture and recipe)",
    "lr": "teacher learning rate (default: per architecture and recipe)",
    "batch_size": "teacher batch size",
    "seed": "teacher seed",
    "recipe": "default (this project's) or paper-code (the notebooks': classic LeNet, lr 1e-3, 10 epochs)",
    "keep": "the teacher epoch kept: last, or best_test (selection on the test split)",
    "optimizer": "adam (torch's per-tensor loop) or adam-fused (its fused kernel: faster on CPU, rounded "
    "differently); a default and per-teacher choices: adam,alexnet=adam-fused",
}
#: The values a field may take, where it takes one of a list (validate checks them).
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": DATASETS, "teacher": TEACHERS, "student": STUDENTS, "backend": BACKENDS,
    "reduction": REDUCTIONS, "ansatz": ANSATZE, "head": HEADS, "kd_form": KD_FORMS,
    "kd_defect": KD_DEFECTS, "selection": SELECTIONS, "report_epoch": REPORT_EPOCHS,
    "shift_rule": SHIFT_RULES, "gradient": GRADIENTS, "device": DEVICES,
    "teacher_recipe": TEACHER_RECIPES, "teacher_keep": TEACHER_KEEPS,
    "teacher_optimizer": TEACHER_OPTIMIZERS,
}  # fmt: skip

#: Defaults (as resolved) of the fields that came after the first result files.
_LATER_FIELDS: dict[str, tuple] = {
    "val_samples_per_class": (0,),
    "student": ("amplitude",),
    "shift_rule": ("exact", ""),
    "selection": ("random",),
    "normalize": (True,),
    "report_epoch": ("last",),
    "kd_defect": ("none", None),
    "test_noise": (None,),
    "noise_scale": (1.0,),
    "circuit": ("",),
}

#: The initial logit scale of the heads that have one (see workers.student).
DEFAULT_HEAD_SCALE = {"linear": 10.0, "log": 1.0}


@functools.lru_cache(maxsize=64)
def user_circuit(ref: str, n_qubits: int):
    """The circuit ``ref`` names for ``n_qubits``, compiled once per process
    (:func:`workers.usercircuit.load_user_circuit`): validation compiles it, so that a bad
    reference is one line naming the field before anything runs, and a grid's points and the
    student that runs it take the same compiled circuit. Anything the user's code raises
    (importing the module, calling the callable) is one line: the error's last line."""
    from workers.refs import last_line  # noqa: PLC0415
    from workers.usercircuit import CircuitError, compile_circuit, resolve  # noqa: PLC0415 - sympy, torch

    try:
        fn = resolve(ref)
        try:
            qc = fn(n_qubits)
        except Exception as exc:  # noqa: BLE001 - the user's callable, likewise
            raise CircuitError(f"{ref}(n_qubits={n_qubits}) raised {last_line(exc)}") from None
        try:
            return compile_circuit(qc, n_qubits, name=ref)
        except CircuitError:
            raise
        except Exception as exc:  # noqa: BLE001 - a circuit Qiskit itself cannot transpile, say
            raise CircuitError(f"{ref} returned a circuit that cannot be compiled: {last_line(exc)}") from None
    except CircuitError as exc:
        message = str(exc).removeprefix("circuit: ")
    if ref not in message:
        message = f"{ref}: {message}"
    raise ConfigError("circuit", " ".join(message.split()))


def _is_ref(name: object) -> bool:
    """Whether ``name`` is a reference to the user's code rather than a registered kind."""
    return isinstance(name, str) and ":" in name


def _one_line(field_name: str, ref: str, exc: Exception) -> ConfigError:
    """``exc`` (a RefError, or what the user's code raised) as a ConfigError naming the
    field and the reference, in one line."""
    from workers.refs import RefError, last_line  # noqa: PLC0415

    message = str(exc).removeprefix(f"{field_name}: ") if isinstance(exc, RefError | ConfigError) else last_line(exc)
    if ref not in message:
        message = f"{ref}: {message}"
    return ConfigError(field_name, " ".join(message.split()))


def _run_check(kind: Any, cfg: TrialConfig) -> None:
    """A kind's own ``check(cfg)``: a ConfigError passes as it is; anything else it raises is
    one line naming the kind."""
    from workers.refs import last_line, resolve  # noqa: PLC0415

    try:
        resolve(kind.check)(cfg)
    except ConfigError:
        raise
    except Exception as exc:  # noqa: BLE001 - a package's code: whatever it raises, in one line
        raise ConfigError(kind.name, f"{kind.name}'s check raised {last_line(exc)}") from None


@functools.lru_cache(maxsize=4)
def user_dataset(ref: str) -> tuple[DatasetKind, tuple, str]:
    """The dataset a reference names, loaded once per process: its kind (the image shape and
    the labels its arrays hold), its raw arrays as :data:`workers.data.LOADERS` give them, and a
    hash of their bytes (part of its teachers' cache keys). Validation loads it, so that a bad
    reference or bad arrays are one line naming ``dataset`` before anything runs."""
    from workers.data import user_arrays  # noqa: PLC0415 - numpy and torch, only for a reference

    return user_arrays(ref)


@functools.lru_cache(maxsize=32)
def user_teacher(ref: str, n_classes: int, shape: tuple[int, ...]) -> str:
    """Checks the teacher a reference names: built for ``n_classes`` and ``shape``, it is a
    ``torch.nn.Module`` that gives N x n_classes scores on a dummy batch (else one line naming
    ``teacher``); once per process and (reference, classes, shape). Returns the hash of its source."""
    from workers.teachers.models import check_user_model  # noqa: PLC0415 - torch, only for a reference

    return check_user_model(ref, n_classes, tuple(shape))


#: The entry-point groups a package declares its kinds in, and the registry each adds to.
ENTRY_POINT_GROUPS: dict[str, tuple[Registry, type]] = {
    "qkd_sweep.datasets": (DATASETS, DatasetKind),
    "qkd_sweep.teachers": (TEACHERS, TeacherKind),
    "qkd_sweep.students": (STUDENT_KINDS, StudentKind),
}
#: The entry points already read in this process: (group, name, value).
_SEEN_ENTRY_POINTS: set[tuple[str, str, str]] = set()


def discover_kinds() -> list[str]:
    """Add the kinds that installed packages declare as entry points (groups
    :data:`ENTRY_POINT_GROUPS`): each entry names a :class:`DatasetKind`, :class:`TeacherKind`
    or :class:`StudentKind` whose ``name`` is the entry's name and whose ``load`` / ``build``
    makes the thing. Runs when this module is imported; call it again after a package was put
    on ``sys.path``. Entries already read are skipped; one that does not load, is not a kind
    of its group or takes a name already registered is a warning, and is left out.
    Returns the names added."""
    import warnings  # noqa: PLC0415
    from importlib.metadata import entry_points  # noqa: PLC0415

    from workers.refs import last_line  # noqa: PLC0415

    added = []
    for group, (registry, cls) in ENTRY_POINT_GROUPS.items():
        for ep in entry_points(group=group):
            seen = (group, ep.name, ep.value)
            if seen in _SEEN_ENTRY_POINTS:
                continue
            _SEEN_ENTRY_POINTS.add(seen)
            where = f"entry point {ep.name} = {ep.value} ({group})"
            try:
                kind = ep.load()
            except Exception as exc:  # noqa: BLE001 - a package's import: whatever it raises, in one line
                warnings.warn(f"{where} does not load: {last_line(exc)}; left out", stacklevel=2)
                continue
            if not isinstance(kind, cls):
                warnings.warn(f"{where} is {type(kind).__name__}, not a {cls.__name__}; left out", stacklevel=2)
            elif kind.name != ep.name:
                warnings.warn(f"{where} names its kind {kind.name!r}, not {ep.name!r}; left out", stacklevel=2)
            elif kind.name in registry and registry[kind.name] != kind:
                warnings.warn(f"{where}: {kind.name!r} is registered already; left out", stacklevel=2)
            elif ":" in kind.name:
                warnings.warn(f"{where}: a kind's name cannot hold ':' (references do); left out", stacklevel=2)
            else:
                registry.add(kind)
                added.append(kind.name)
    return added


discover_kinds()
