"""A teacher training's checkpoint: its state after each epoch, kept in the teacher's cache
entry, so that a training killed part-way resumes after its last finished epoch instead of
starting over.

The file holds the weights, the optimizer's state, every random state the training draws
from, the scored epochs and the best one's weights. It is written whole or not at all, and
read only when it is of this format, belongs to the same teacher key and fits the training's
epochs; anything else is discarded with a warning. :func:`workers.teachers.train.train_teacher`
writes and reads it; :func:`workers.teachers.logits.get_teacher` removes it once the entry is
complete.
"""

from __future__ import annotations

import contextlib
import io
import random
import warnings

import numpy as np
import torch

from workers.io import Location, atomic_write

#: A cache entry's checkpoint file, present only while its teacher is being trained.
CHECKPOINT = "checkpoint.pt"
#: Bumped when what a checkpoint holds changes, so an old one is discarded, not misread.
CHECKPOINT_FORMAT = 1


def _rng_states(dev: torch.device, gen: torch.Generator) -> dict:
    """Every random state a teacher's training draws from or could: torch's (dropout), the
    batch order's generator, CUDA's when training there, and numpy's and Python's."""

    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "order": gen.get_state(),
        "cuda": torch.cuda.get_rng_state(dev) if dev.type == "cuda" else None,
        "numpy": {"kind": kind, "keys": torch.as_tensor(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }  # fmt: skip


def _set_rng_states(states: dict, dev: torch.device, gen: torch.Generator) -> None:
    torch.set_rng_state(states["torch"])
    gen.set_state(states["order"])
    if dev.type == "cuda" and states["cuda"] is not None:
        torch.cuda.set_rng_state(states["cuda"], dev)
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    py = states["python"]
    random.setstate((py["version"], tuple(py["internal"]), py["gauss_next"]))


def _save_checkpoint(path: Location, state: dict) -> None:
    """The state after an epoch, written whole (temporary name, rename) or not at all."""
    atomic_write(path, lambda tmp: torch.save(state, tmp))


def _load_checkpoint(path: Location, digest: str, epochs: int) -> dict | None:
    """A checkpoint of this teacher (its cache key's hash) to resume from; None when there
    is none, and None with one warning line (the file removed) when it is damaged, belongs
    to another key or says something impossible: training then starts over."""
    if not path.exists():
        return None
    try:
        state = torch.load(io.BytesIO(path.read_bytes()), map_location="cpu", weights_only=True)
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise ValueError("it is not a teacher checkpoint of this version")
        if state.get("key_hash") != digest:
            raise ValueError(f"it belongs to teacher key {state.get('key_hash')!r}, not {digest!r}")
        if not 1 <= int(state["epoch"]) <= epochs or len(state["test_accs"]) not in (0, int(state["epoch"])):
            raise ValueError(f"its epoch {state.get('epoch')!r} does not fit {epochs} epochs")
        missing = [name for name in ("model", "optimizer", "rng", "seconds", "best_state") if name not in state]
        if missing:  # a missing part is a damaged file
            raise KeyError(", ".join(missing))
        return state
    except Exception as exc:  # noqa: BLE001 (anything unreadable is discarded, and training starts over)
        reason = " ".join(str(exc).split())[:200] or type(exc).__name__
        warnings.warn(f"teacher checkpoint {path} is damaged ({reason}); discarding it and training from epoch 0",
                      stacklevel=2)  # fmt: skip
        with contextlib.suppress(OSError):
            path.delete()
        return None
