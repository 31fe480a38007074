"""Trial configs as the plain dicts that Ray Tune and a child process carry, and back.

A :class:`~workers.config.TrialConfig` goes out as ``cfg.to_dict()`` (JSON- and
pickle-friendly); these turn such a dict back into the config the trial runs.
Light on purpose (``workers.config`` only): the benchmark's trial process imports
this and nothing else of the sweep.
"""

from __future__ import annotations

import dataclasses

from workers.config import TrialConfig
from workers.teacher_settings import TeacherSettings


def config_from_dict(d: dict) -> TrialConfig:
    """The config a ``to_dict()`` (or the same fields written by hand) describes, not yet validated."""
    return TrialConfig(**{**d, "teacher_settings": TeacherSettings(**d["teacher_settings"])})


def sampled_config(base: dict, drawn: dict) -> TrialConfig:
    """A study's trial: the base config with the values the searcher drew (Tune's own keys left out)."""
    values = {k: v for k, v in drawn.items() if k not in ("trial", "threads")}
    return dataclasses.replace(config_from_dict(base), **values).validate()
