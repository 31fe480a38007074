"""The kinds a config may name, in one registry per idea: datasets, teachers, students.

A kind says what the rest of the code needs to know of a dataset, a teacher or a student
without building one (a dataset's image shape, a teacher's members, whether a student runs
a circuit), so that validation, the CLI's help and the tables read them with no torch and
no Qiskit; the code that builds a kind registers its builder beside that code
(:mod:`workers.data`, :mod:`workers.teachers.models`, :mod:`workers.student`).

Where a kind's name may stand, so may a reference to the user's own code
(``PKG.MODULE:CALLABLE``): :func:`user_circuit`, :func:`user_dataset` and
:func:`user_teacher` load and check what it names once per process, so that a bad
reference is one line naming the field before anything runs. Installed packages add
kinds of their own as entry points (:func:`discover_kinds`, run when this module is
imported).
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import TYPE_CHECKING, Any

from workers.errors import ConfigError
from workers.refs import last_line, resolve, user_code

if TYPE_CHECKING:
    from workers.config import TrialConfig


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


def trained_as_one(arch: str, recipe: str) -> bool:
    """Whether teacher ``arch`` is one trained model under ``recipe``; else it is an
    ensemble assembled from trained members (eq. 16). The paper-code recipe trains its
    ensemble as one model, as the released notebooks did."""
    return not members_of(arch) or recipe == "paper-code"


@functools.lru_cache(maxsize=64)
def user_circuit(ref: str, n_qubits: int):
    """The circuit ``ref`` names for ``n_qubits``, compiled once per process
    (:func:`workers.usercircuit.load_user_circuit`): validation compiles it, so that a bad
    reference is one line naming the field before anything runs, and a grid's points and the
    student that runs it take the same compiled circuit. Anything the user's code raises
    (importing the module, calling the callable) is one line: the error's last line."""
    from workers.usercircuit import CircuitError, compile_circuit, resolve  # noqa: PLC0415 - sympy, torch

    try:
        fn = resolve(ref)
        with user_code(CircuitError, f"{ref}(n_qubits={n_qubits}) raised "):
            qc = fn(n_qubits)
        # a circuit Qiskit itself cannot transpile, say
        with user_code(CircuitError, f"{ref} returned a circuit that cannot be compiled: ", passes=(CircuitError,)):
            return compile_circuit(qc, n_qubits, name=ref)
    except CircuitError as exc:
        message = str(exc).removeprefix("circuit: ")
    if ref not in message:
        message = f"{ref}: {message}"
    raise ConfigError("circuit", " ".join(message.split()))


@functools.lru_cache(maxsize=4)
def user_dataset(ref: str) -> tuple[DatasetKind, tuple, str]:
    """The dataset a reference names, loaded once per process: its kind (the image shape and
    the labels its arrays hold), its raw arrays as :data:`workers.data.LOADERS` give them, and a
    hash of their bytes (part of its teachers' cache keys). Validation loads it, so that a bad
    reference or bad arrays are one line naming ``dataset`` before anything runs."""
    from workers.data import user_arrays  # noqa: PLC0415 - numpy and torch, only for a reference

    return user_arrays(ref)


def check_user_classes(dataset: str, classes: str) -> None:
    """The class subset ``classes`` names classes that the user's ``dataset`` (a reference) has,
    in both of its splits."""
    kind, raw, _ = user_dataset(dataset)
    labels = parse_classes(classes, 2**31)
    if max(labels) >= kind.n_classes:
        raise ConfigError("classes", f"{classes!r} asks for class {max(labels)}, but {dataset} has "
                          f"{kind.n_classes} classes (labels 0..{kind.n_classes - 1})")  # fmt: skip
    for split, y in (("train", raw[1]), ("test", raw[3])):
        missing = sorted(set(labels) - {int(c) for c in set(y.tolist())})
        if missing:
            raise ConfigError("classes", f"{classes!r}: {dataset} has no {split} images of "
                              f"class{'es' * (len(missing) > 1)} {', '.join(map(str, missing))}")  # fmt: skip


@functools.lru_cache(maxsize=32)
def user_teacher(ref: str, n_classes: int, shape: tuple[int, ...]) -> str:
    """Checks the teacher a reference names: built for ``n_classes`` and ``shape``, it is a
    ``torch.nn.Module`` that gives N x n_classes scores on a dummy batch (else one line naming
    ``teacher``); once per process and (reference, classes, shape). Returns the hash of its source."""
    from workers.teachers.models import check_user_model  # noqa: PLC0415 - torch, only for a reference

    return check_user_model(ref, n_classes, tuple(shape))


def run_check(kind: Any, cfg: TrialConfig) -> None:
    """A kind's own ``check(cfg)``: a ConfigError passes as it is; anything else it raises is
    one line naming the kind."""

    with user_code(lambda m: ConfigError(kind.name, m), f"{kind.name}'s check raised ", passes=(ConfigError,)):
        resolve(kind.check)(cfg)


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
