"""The failure budget of an ``ignore_errors`` scope, shared by the stages of the scope.

The planner marks every per-item stage of a scope with one ``ErrorScope``; the first
stage built (the most upstream) makes the live ``Budget`` and the others find it by
its token up the chain of live stages, so each run has budgets of its own. A stage in
the parent process records each drop as it happens (a worker thread, the consumer);
a process stage records those its workers report with their results. Recording is
where the budget is enforced: past it, ``TooManyErrors`` is raised there and reaches
the consumer like any other error of that stage.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from typing import Any

from .._errors import TooManyErrors, describe_item
from .._plan import ErrorScope, ErrorToken
from ._stage import Stage

__all__ = ["Budget", "MIN_SEEN", "budget_for", "keep_budget"]

#: A share budget is checked once at least this many items have been seen.
MIN_SEEN = 100


class Budget:
    """Counts of one scope in one run: items seen, items dropped, the first error."""

    def __init__(self, scope: ErrorScope) -> None:
        self.token: ErrorToken = scope.token
        self.limit = scope.max_failures
        self.log = scope.log
        self.failures = 0
        self._counter = itertools.count(1)
        #: Called once per item entering the first stage (atomic: threads may share it).
        self.count: Callable[[], int] = self._counter.__next__
        self._added = 0  # items counted in bulk (process stages, per chunk)
        self._lock = threading.Lock()
        self.first: tuple[str, str] | None = None  # the first error's type and message
        self._broken: tuple[int, int] | None = None  # (failures, seen) when it broke

    @property
    def seen(self) -> int:
        """Items that entered the first stage of the scope so far."""
        # itertools.count shows its next value in its repr; no other API reads it.
        return int(repr(self._counter)[6:-1]) - 1 + self._added

    def add_seen(self, count: int) -> None:
        with self._lock:
            self._added += count

    def drop(self, error: BaseException, label: str, item: Any, position: int | None) -> None:
        """Record an item dropped for ``error`` (the ``drop`` of the compiled code)."""
        self.dropped(error, label, describe_item(item), position)

    def dropped(
        self, error: BaseException, label: str, item: str, position: int | None
    ) -> None:
        """Record a drop whose item is already described; raise past the budget."""
        with self._lock:
            if self._broken is None:
                self.failures += 1
                failures, seen = self.failures, self.seen
                if self._over(failures, seen):
                    self._broken = (failures, seen)
            else:
                # Past the budget, other workers may still fail items: whichever error
                # reaches the consumer tells the counts at which the budget broke.
                failures, seen = self._broken
            if self.first is None:
                self.first = (type(error).__name__, str(error))
            first = self.first
        if self.log:
            import logging  # here, not at the top: only a dropped item needs it

            logging.getLogger("tinypl").warning(
                "tinypl: ignore_errors dropped %s (%s) in %s: %s: %s",
                "an item" if position is None else f"item {position}", item, label,
                type(error).__name__, error,
            )  # fmt: skip
        if self._broken is not None:
            raise TooManyErrors(
                f"ignore_errors: {failures} items failed out of {seen} seen, more than"
                f" max_failures={self.limit!r} allows; the first error: {first[0]}:"
                f" {first[1]}",
                failures,
                seen,
            ) from error

    def _over(self, failures: int, seen: int) -> bool:
        limit = self.limit
        if limit is None:
            return False
        if isinstance(limit, int):
            return failures > limit
        return seen >= MIN_SEEN and failures > limit * seen


def budget_for(scope: ErrorScope | None, upstream: Stage[Any]) -> Budget | None:
    """The live budget of ``scope`` in the run of ``upstream``: found up the chain of
    live stages, or made when this is the first stage of the scope."""
    if scope is None:
        return None
    if scope.first:
        return Budget(scope)
    current: Any = upstream
    while isinstance(current, Stage):
        budget = getattr(current, "_budget", None)
        if budget is not None and budget.token is scope.token:
            return budget  # type: ignore[no-any-return]
        current = current._upstream
    # The first stage of the scope was not built as a stage of its own (a live stage
    # given as the source): this one is the first now.
    return Budget(scope)


def keep_budget(stage: Stage[Any], budget: Budget | None) -> Stage[Any]:
    """Let later stages of the scope find ``budget`` on ``stage``."""
    if budget is not None:
        stage._budget = budget  # type: ignore[attr-defined]
    return stage
