"""Teaching the sampler in ask order, so that one driver's search is reproducible.

TPE decides a trial's parameters from the trials it has been told (and, with
``constant_liar``, from those still running). If results were told as the
workers return them, what the sampler knows when it draws trial *i* would
depend on which task finished first, and two runs of the same config and
seed would drift apart (seen: λ1 2.648 against 2.669, once another penalty).

The rule here: before trial *i* of this run is asked, the sampler has been
told exactly the outcomes of this run's trials ``0 … i − window`` (in that
order), and the trials ``i − window + 1 … i − 1`` are running. Both sets
depend on *i* alone. A result that arrives early waits (it is already in the
study: only the sampler is told later); a trial cannot be asked until the
result it must come after is back. The scheduler sets ``window`` one batch
above its capacity: with two workers, two batches run at once and end in
either order, and a window of exactly the capacity would hold the next batch
back whenever the later of the two ends first.

Several drivers on one study (each sees the others' trials when they come)
and resumed studies (stale trials re-queued) are not covered by the rule.
"""

from __future__ import annotations

from .study import PendingTrial, TrialStore

__all__ = ["TeachInOrder"]


class TeachInOrder:
    """The outcomes of this run's trials, taught to the sampler in ask order (module docstring)."""

    def __init__(self, store: TrialStore, window: int) -> None:
        self.store = store
        self.window = max(1, window)
        self._asked: list[PendingTrial] = []
        self._index: dict[int, int] = {}  # RDB trial id -> ask index
        self._outcome: dict[int, float | None] = {}  # ask index -> value (None: failed)
        self.taught = 0  # this run's trials taught so far (all indices below)

    @property
    def next_index(self) -> int:
        """The ask index the next trial will have."""
        return len(self._asked)

    def may_ask(self) -> bool:
        """Teach what the next trial must see; whether it may be asked now."""
        limit = self.next_index - self.window
        while self.taught <= limit and self.taught in self._outcome:
            self._teach_next()
        return self.taught > limit

    def asked(self, pending: PendingTrial) -> None:
        """Note a trial just asked (it takes the next index)."""
        self._index[pending.trial_id] = len(self._asked)
        self._asked.append(pending)

    def finished(self, pending: PendingTrial, value: float | None) -> None:
        """Note a trial's outcome (recorded in the study already); it is taught when its turn comes."""
        self._outcome[self._index[pending.trial_id]] = value

    def teach_all(self) -> None:
        """Teach every outcome known, in ask order (the end of the run: nothing more is asked)."""
        for index in sorted(i for i in self._outcome if i >= self.taught):
            self.taught = index
            self._teach_next()

    def _teach_next(self) -> None:
        index = self.taught
        self.store.teach(self._asked[index], self._outcome.pop(index))
        self.taught = index + 1
