"""The CLI's help for a trial's fields: one line per field.

``qkd-sweep trial`` makes one option per field of :class:`workers.config.TrialConfig` (and
``teacher-*`` per field of :class:`workers.teacher_settings.TeacherSettings`), its help the
line here and its choices :data:`workers.choices.FIELD_CHOICES`; a test holds every field to
one line, so that a new field is not an option without help. Kept apart from the config,
which needs none of it to validate.
"""

from __future__ import annotations

from workers.kinds import STUDENT_KINDS

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
