"""One back-off for every retry loop: pauses that double from a first value up to a cap,
each drawn with jitter so that many daemons (or clients) retrying the same thing do not fall
in step.

Every loop of ptm that waits before trying again uses this class: the site following its
hub and storing what it verified (``site/replicator.py``), its own files failing
(``site/faults.py``), the upload of a large output (``site/outputs.py``) and the
resubmission of signed results (``site/resubmit.py``), the hub's appends and checkpoint
signing (``hub/sequencer.py``), and the researcher's client reconnecting to a restarted hub
(``client/session.py``). It imports nothing of ptm (and no trio): network/, site/, hub/ and
client/ all may use it. The caller sleeps (``trio.sleep`` or ``time.sleep``); this only says
for how long.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Pauses ``first``, ``2·first``, ``4·first``… up to ``cap``, each multiplied by a factor
    drawn uniformly from ``jitter`` and never above ``cap``.

    ``next()`` takes one step; ``reset()`` after a success starts again from ``first``;
    ``at(attempt)`` is the pause before attempt ``attempt + 1`` for a caller that counts
    attempts itself.
    """

    first: float
    cap: float
    jitter: tuple[float, float] = (0.75, 1.25)
    rng: random.Random | None = None
    _nominal: float = field(default=0.0, init=False, repr=False)

    def __post_init__(self) -> None:
        low, high = self.jitter
        if not (0 < self.first <= self.cap and 0 <= low <= high):
            raise ValueError(
                f"a back-off needs 0 < first <= cap and 0 <= jitter low <= high, "
                f"not first={self.first}, cap={self.cap}, jitter={self.jitter}"
            )

    @property
    def nominal(self) -> float:
        """The last step before jitter (0 before the first step or after a reset)."""
        return self._nominal

    @property
    def started(self) -> bool:
        """Whether a step was taken since the last reset (something is failing)."""
        return self._nominal > 0

    def next(self) -> float:
        """The next pause in seconds; the one after it is twice as long (up to the cap)."""
        self._nominal = min(max(self._nominal * 2, self.first), self.cap)
        return self._jittered(self._nominal)

    def reset(self) -> None:
        """A success: the next failure waits ``first`` again."""
        self._nominal = 0.0

    def at(self, attempt: int) -> float:
        """The pause before attempt ``attempt + 1`` (0-based), without changing the state."""
        return self._jittered(min(self.first * 2 ** min(attempt, 64), self.cap))

    def _jittered(self, nominal: float) -> float:
        return min(nominal * (self.rng or random).uniform(*self.jitter), self.cap)
