"""The distillation loss.

The paper's eq. 6 is garbled in the text. The default form is the standard
one of Hinton et al. (2015)::

    hinton:   (1 - lam) * CE(s, y) + lam * T**2 * KL(softmax(t/T) || softmax(s/T))

where ``s`` are the student's logits, ``t`` the teacher's, ``y`` the labels,
CE and KL are batch means, and the T**2 keeps the soft term's gradient on the
same scale as the hard term's when T changes. Two other readings are kept
selectable so that their effect can be measured::

    convex:   (1 - lam) * CE + lam * KL            (no T**2)
    additive: CE + lam * T**2 * KL                 (the hard term is never down-weighted)

``lam == 0`` or no teacher logits is the plain cross-entropy baseline.

A head may score more outcomes than there are classes (the released notebooks'
``sigmoid-pair`` head scores 2 * 2**Q): the cross-entropy runs over all of them,
the KL over the first C, as there.

``defect`` reproduces, by name, a released notebook's broken term (see
workers.choices.KD_DEFECTS); ``none`` is the loss above.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def kl_soft(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float):
    """KL(softmax(t/T) || softmax(s/T)), averaged over the batch."""
    return F.kl_div(
        F.log_softmax(student_logits / temperature, dim=1),
        F.log_softmax(teacher_logits / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    )


def distillation_loss(
    student_logits: torch.Tensor,
    labels: torch.Tensor,
    teacher_logits: torch.Tensor | None = None,
    temperature: float = 3.0,
    lam: float = 0.9,
    form: str = "hinton",
    defect: str = "none",
) -> tuple[torch.Tensor, dict[str, float]]:
    """The training loss and its parts (``ce``, ``kl``) for logging."""
    ce = F.cross_entropy(student_logits, labels)
    if teacher_logits is None or lam == 0:
        return ce, {"ce": float(ce.detach()), "kl": float("nan")}
    teacher_logits = teacher_logits.to(student_logits.dtype)
    n_classes = teacher_logits.shape[1]
    kl = kl_soft(student_logits[:, :n_classes], teacher_logits, temperature)
    parts = {"ce": float(ce.detach()), "kl": float(kl.detach())}
    if defect == "teacher-ce":  # the teacher's CE against the labels: no gradient reaches the student
        return ce + F.cross_entropy(teacher_logits, labels), parts
    if defect == "zeroed":
        return ce + 0 * kl, parts
    if defect == "six-classes":  # KLDivLoss('mean') over C classes scaled by T^2 * 6 * lam
        kl = kl * 6 / n_classes
    elif defect != "none":
        raise ValueError(f"kd_defect: unknown defect {defect!r}")
    t2 = temperature**2
    if form == "hinton":
        loss = (1 - lam) * ce + lam * t2 * kl
    elif form == "convex":
        loss = (1 - lam) * ce + lam * kl
    elif form == "additive":
        loss = ce + lam * t2 * kl
    else:
        raise ValueError(f"kd_form: unknown form {form!r}")
    return loss, parts
