"""When a training has diverged: a non-finite loss, a loss that blew up and stayed up, or a network
that collapsed to one output. The trainer asks DivergenceWatch after every batch and ends the run
"diverged" with its reason, which names what to change (usually the learning rate)."""
from __future__ import annotations

import math

from .batches import TrainingError


class Diverged(TrainingError):
    """The loss went non-finite, blew up or the network collapsed: the run ends "diverged"."""


DIVERGE_FACTOR = 3.0  # a loss above this multiple of the starting loss is "far above" it
DIVERGE_PATIENCE = 20  # consecutive batches (at most one epoch's) before a high loss or a collapse ends the run
REFERENCE_BATCHES = 5  # the starting loss: the mean of the run's first batches


class DivergenceWatch:
    """Decides, batch by batch, whether a training diverged. Three rules:

    1. a non-finite loss (inf, nan) ends the run at once;
    2. a loss above DIVERGE_FACTOR (3) times the starting loss (the mean of the run's first
       REFERENCE_BATCHES (5) batches) for ``patience`` consecutive batches: it blew up and is
       not coming back (a single spike, which a high learning rate often gives, is allowed);
    3. a collapse: the network gives every image of a batch the same output (the outputs'
       spread across the batch is zero, up to float rounding) for ``patience`` consecutive
       batches. Its units are dead (weights thrown far by a step too large), no gradient
       reaches them, and it stays at chance accuracy however long it trains.

    ``patience`` is DIVERGE_PATIENCE (20) batches, or one epoch when epochs are shorter, so a
    tiny run is judged too. A too-high learning rate is the usual cause of all three. The
    starting loss is part of the resume state, so a resumed run is judged as if it had not
    stopped. Not caught: a run that stays just above chance without collapsing (it
    ends "finished" with a poor accuracy, which its curves show)."""

    def __init__(self, batches_per_epoch: int, reference: float | None = None):
        self.patience = max(1, min(DIVERGE_PATIENCE, batches_per_epoch))
        self.reference = reference
        self.first: list[float] = []
        self.high = self.flat = 0

    def check(self, loss: float, spread: float, scale: float, n: int) -> str | None:
        """The reason the run diverged at this batch, or None. ``spread``: the largest difference
        between an image's outputs and the first image's; ``scale``: the largest output."""
        if not math.isfinite(loss):
            return f"the loss went to {loss}"
        if self.reference is None:
            self.first.append(loss)
            if len(self.first) == REFERENCE_BATCHES:
                self.reference = sum(self.first) / len(self.first)
        else:
            self.high = self.high + 1 if loss > DIVERGE_FACTOR * self.reference else 0
            if self.high >= self.patience:
                return (f"the loss stayed above {DIVERGE_FACTOR:g}x its starting value {self.reference:.3g} for "
                        f"{self.patience} batches (it is {loss:.3g})")
        if n >= 2:  # one image always agrees with itself
            self.flat = self.flat + 1 if spread <= 1e-5 * max(1.0, scale) else 0
            if self.flat >= self.patience:
                return (f"the network collapsed: it gave every image the same prediction for {self.patience} "
                        f"batches (loss {loss:.3g}, chance level)")
        return None
