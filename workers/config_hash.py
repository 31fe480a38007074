"""A trial's identity, and the config hash read off it: what decides a result, and the rules
that keep the hashes of the rows already written.

Every result row carries ``config_hash``: a grid runs each hash once, a sweep skips the
trials whose hash its results hold already, the tables count a hash's latest row, and the
epoch rows name their trial by it. A hash that changed would make every stored row a
stranger, to be run again; so the identity is read off the resolved config (two spellings
of one experiment hash alike), leaves out what does not decide the result (paths, the
device, a setting that means nothing for the trial), and leaves out a field added after
the first results while it holds the value those results were run with
(:data:`_LATER_FIELDS`: a new field is one line there). The tests pin stored rows' hashes.
"""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

from workers.kinds import TEACHERS, trained_as_one

if TYPE_CHECKING:
    from workers.config import TrialConfig

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


def identity_of(cfg: TrialConfig) -> dict[str, Any]:
    """What decides the result, from the resolved form: no paths, and nothing a
    setting makes moot (T and λ of a baseline, a baseline's teacher settings)."""
    d = cfg.resolved().to_dict()
    for k in ("data_root", "download", "cache_dir", "device"):
        d.pop(k)
    # The gradient is left out where it is what the backend and shots always meant
    # (before it was a setting of its own), so that those runs keep their hashes.
    if d["gradient"] == ("autograd" if d["backend"] == "statevector" and not d["shots"] else "parameter-shift"):
        d.pop("gradient")
    elif d["gradient"] == "":
        d.pop("gradient")
    d["classes"] = list(cfg.class_labels)
    if not cfg.distills:  # a baseline is the same experiment whatever T and lam say
        d["temperature"] = d["lam"] = d["kd_form"] = d["kd_defect"] = None
    if cfg.teacher == "none":
        d["teacher_settings"] = None
    # Fields added after the first results were written are left out at their
    # defaults, so that those runs keep the hashes they were written with.
    for name, defaults in _LATER_FIELDS.items():
        if d.get(name) in defaults:
            d.pop(name)
    if d["teacher_settings"] is not None:
        # The optimizer this trial's teacher takes, so a per-architecture choice leaves
        # the other teachers' trials with the hashes they had.
        d["teacher_settings"]["optimizer"] = cfg.teacher_settings.resolved_optimizer(cfg.teacher)
        # Per-architecture epochs and rates likewise: this trial's teacher's (an ensemble
        # assembled from its members keeps the whole text: its members' values decide it).
        ts = cfg.teacher_settings
        if trained_as_one(cfg.teacher, ts.recipe) if cfg.teacher in TEACHERS else True:
            if isinstance(ts.epochs, str):
                d["teacher_settings"]["epochs"] = ts.resolved_epochs(cfg.dataset, cfg.teacher)
            if isinstance(ts.lr, str):
                d["teacher_settings"]["lr"] = ts.resolved_lr(cfg.teacher)
        for name, default in (("recipe", "default"), ("keep", "last"), ("optimizer", "adam")):
            if d["teacher_settings"].get(name) == default:
                d["teacher_settings"].pop(name)
    return d


def hash_of(cfg: TrialConfig) -> str:
    """A stable hash of everything that decides the result (not where files go)."""
    blob = json.dumps(identity_of(cfg), sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
