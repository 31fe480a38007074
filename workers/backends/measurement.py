"""Measurement: what a circuit's exact outcome probabilities become.

* :class:`Exact`: the probabilities themselves (``shots: 0``).
* :class:`Sampled`: ``shots`` counts per bound circuit, drawn as one multinomial per
  row from a named random stream, returned as frequencies. That has the same
  distribution as a simulator's per-shot sampling of the measured circuit (a test
  holds the two together) and costs a fraction of it.

Every executor hands its probabilities to the same measurement, so two executors
that agree on the probabilities (to ~1e-12) draw the same counts from the same
stream: a trial's numbers do not depend on which simulator ran it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np


class Exact:
    name = "exact"
    shots = 0
    rng = None

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        return probs

    @contextlib.contextmanager
    def drawing_from(self, rng: np.random.Generator | None) -> Iterator[None]:
        yield


class Sampled:
    """``shots`` counts per row from ``rng``; frequencies out."""

    name = "sampled"

    def __init__(self, shots: int, seed: int | np.random.Generator = 0):
        if shots < 1:
            raise ValueError(f"shots: a sampled measurement needs shots >= 1, got {shots}")
        self.shots = int(shots)
        self.rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        probs = np.clip(probs, 0.0, None)
        probs /= probs.sum(axis=1, keepdims=True)
        return self.rng.multinomial(self.shots, probs) / self.shots

    @contextlib.contextmanager
    def drawing_from(self, rng: np.random.Generator | None) -> Iterator[None]:
        """Draw the shots of the calls inside from ``rng`` instead of the measurement's own stream.

        A trial scores its validation split this way, so that adding one leaves the
        draws of training and of the test split, and so their numbers, as they were.
        """
        if rng is None:
            yield
            return
        own, self.rng = self.rng, rng
        try:
            yield
        finally:
            self.rng = own


def make_measurement(shots: int, seed: int) -> Exact | Sampled:
    return Sampled(shots, seed) if shots else Exact()
