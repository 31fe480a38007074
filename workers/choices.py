"""The values a trial's fields may take, where a field takes one of a list.

:meth:`workers.config.TrialConfig.validate` checks a config's values against these, and
the CLI's help lists them; the code that acts on a value (an executor, a reduction, a head,
a loss form) lives where the comment beside each tuple says. The kinds (datasets, teachers,
students) are registries of their own, :mod:`workers.kinds`, and the teachers' training
choices sit with their settings, :mod:`workers.teacher_settings`; :data:`FIELD_CHOICES`
gathers every list by the field that takes it.
"""

from __future__ import annotations

from workers.kinds import DATASETS, STUDENTS, TEACHERS
from workers.teacher_settings import TEACHER_KEEPS, TEACHER_OPTIMIZERS, TEACHER_RECIPES

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
#: The initial logit scale of the heads that have one (see workers.student).
DEFAULT_HEAD_SCALE = {"linear": 10.0, "log": 1.0}
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

#: The values a field may take, where it takes one of a list (validate checks them).
FIELD_CHOICES: dict[str, tuple[str, ...]] = {
    "dataset": DATASETS, "teacher": TEACHERS, "student": STUDENTS, "backend": BACKENDS,
    "reduction": REDUCTIONS, "ansatz": ANSATZE, "head": HEADS, "kd_form": KD_FORMS,
    "kd_defect": KD_DEFECTS, "selection": SELECTIONS, "report_epoch": REPORT_EPOCHS,
    "shift_rule": SHIFT_RULES, "gradient": GRADIENTS, "device": DEVICES,
    "teacher_recipe": TEACHER_RECIPES, "teacher_keep": TEACHER_KEEPS,
    "teacher_optimizer": TEACHER_OPTIMIZERS,
}  # fmt: skip
