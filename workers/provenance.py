"""What every result row carries so that it can be reproduced: code and package versions."""

from __future__ import annotations

import functools
import subprocess
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The package version, plus the git commit (and ``-dirty``) when run from a checkout."""
    try:
        ver = version("qkd-sweep")
    except PackageNotFoundError:
        ver = "0+unknown"
    here = Path(__file__).resolve().parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=here,
                             capture_output=True, text=True, timeout=5, check=True).stdout.strip()  # fmt: skip
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
                               capture_output=True, text=True, timeout=5).stdout.strip()  # fmt: skip
        return f"{ver}+g{sha}{'.dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return ver


@functools.lru_cache(maxsize=1)
def package_versions() -> dict[str, str]:
    out = {}
    for pkg in ("torch", "qiskit", "qiskit-aer", "numpy"):
        try:
            out[pkg.replace("-", "_") + "_version"] = version(pkg)
        except PackageNotFoundError:
            out[pkg.replace("-", "_") + "_version"] = ""
    return out
