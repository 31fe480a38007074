"""The error of a configuration value that cannot run, in a module of its own.

Every module that reads a config's values raises it: the kinds and the user's references
(:mod:`workers.kinds`), the noise specs (:mod:`workers.noise_spec`), the teacher settings
(:mod:`workers.teacher_settings`) and :class:`workers.config.TrialConfig` itself; the CLI and
the Python API catch it and print its one line (exit status 2). It sits beneath all of them,
so that none of them imports another for it, and catching it imports nothing else.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration value that cannot run; the message names the field."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
