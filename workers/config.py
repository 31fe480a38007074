"""The one configuration object of a trial, validated once, at the edge.

Everything a trial does is a function of a :class:`TrialConfig`. The CLI (and,
later, the sweep driver) builds one from user input and calls
:meth:`TrialConfig.validate`; code further in trusts the values it holds.
Bad input raises :class:`~workers.errors.ConfigError`, whose message is one line naming
the field and the value, so that the CLI can print it and exit with status 2.

This module is the config and its checks; what else a config needs is one module per job,
none of which imports torch or Qiskit: the kinds and the user's references
(:mod:`workers.kinds`), the choice tuples (:mod:`workers.choices`), noise specs
(:mod:`workers.noise_spec`), the teacher's settings (:mod:`workers.teacher_settings`), the
config hash and the rules that keep stored rows' hashes (:mod:`workers.config_hash`), and
the CLI's help (:mod:`workers.help`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from workers.choices import (
    ANSATZE,
    BACKENDS,
    DEFAULT_HEAD_SCALE,
    DEVICES,
    GRADIENTS,
    HEADS,
    KD_DEFECTS,
    KD_FORMS,
    REDUCTIONS,
    REPORT_EPOCHS,
    SELECTIONS,
    SHIFT_RULES,
)
from workers.config_hash import hash_of, identity_of
from workers.errors import ConfigError
from workers.kinds import (
    DATASETS,
    STUDENT_KINDS,
    STUDENTS,
    TEACHERS,
    StudentKind,
    check_user_classes,
    dataset_kind,
    members_of,
    n_labels,
    parse_classes,
    run_check,
    teacher_kind,
    user_circuit,
    user_teacher,
)
from workers.noise_spec import NO_NOISE, check_noise
from workers.refs import is_reference
from workers.teacher_settings import (
    TEACHER_KEEPS,
    TEACHER_RECIPES,
    TeacherSettings,
    parse_optimizer,
    parse_teacher_number,
)

#: The paper measures every circuit with 5000 shots.
PAPER_SHOTS = 5000


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

        if is_reference(self.dataset):
            dataset_kind(self.dataset)  # loaded (once per process) and checked: one line naming dataset
        else:
            choice("dataset", DATASETS, refs=True)
        if not is_reference(self.teacher):
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
        if is_reference(self.dataset):
            check_user_classes(self.dataset, self.classes)
        labels = self.class_labels  # raises with the field name
        for model in (self.teacher, *members_of(self.teacher)):  # a package's ensemble may name references
            if is_reference(model) and model not in TEACHERS:  # built once, run on a batch of two images
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
            check_noise("noise", self.noise, self.noise_scale, self.qubits)
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
                    check_noise("test_noise", self.test_noise, self.noise_scale, self.qubits)
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
                run_check(own, self)
        return self

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

    # ---------------------------------------------------------------- identity
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def identity(self) -> dict[str, Any]:
        """What decides the result (:func:`workers.config_hash.identity_of`)."""
        return identity_of(self)

    def config_hash(self) -> str:
        """A stable hash of everything that decides the result (:func:`workers.config_hash.hash_of`)."""
        return hash_of(self)
