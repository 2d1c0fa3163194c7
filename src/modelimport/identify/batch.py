"""Identify the models of a batch in parallel: bounded concurrent lookups, a time budget.

    batch = LookupBatch(hub_session, requests, workers=8, budget_s=300)
    result = batch.result(i)        # waits for lookup i, at most until the budget runs out
    batch.close()

Invariants:
- At most `workers` lookups run at once; they start in request order, so the first models
  of a batch are answered first (the importer copies them meanwhile).
- Each result is what `source.identify` returns for that request alone: what the lookups
  share (searches, repo listings, rate limits, the breaker) is shared inside the source,
  which is thread-safe (`identify.source`), so the verdicts equal a sequential run's.
- When the budget runs out, every lookup not finished yet ends as `hub_error =
  BUDGET_SPENT`: the model is imported pending and `retry-pending` identifies it later.
  Lookups still running finish in the background on daemon threads (each is bounded by its
  call budget and timeout, and never delays the command's exit); their answers land in the
  disk cache, so the retry costs fewer calls.
- Never raises for source trouble: `identify` does not, and anything else becomes an error
  result for that model only.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

LOOKUP_WORKERS = 8  # concurrent lookups: enough to hide ~100-300 ms of latency per call
LOOKUP_BUDGET_S = 300.0  # seconds a batch waits for lookups before leaving the rest pending
BUDGET_SPENT = "the lookup time budget of this batch ran out"


class LookupBatch:
    """The lookups of one batch, running on a bounded number of daemon threads (a Ctrl-C or
    the end of the command never waits for a lookup nobody needs any more)."""

    def __init__(
        self,
        source: Any,
        requests: Sequence[Any],
        *,
        workers: int = LOOKUP_WORKERS,
        budget_s: float | None = LOOKUP_BUDGET_S,
        on_done: Callable[[int, Any], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.source = source
        self._clock = clock  # passed in so that a test can run the budget out when it likes
        self.deadline = None if budget_s is None else clock() + budget_s
        self._on_done = on_done
        self._count = len(requests)
        self._results: dict[int, Any] = {}
        self._done = [threading.Event() for _ in requests]
        self._lock = threading.Lock()
        self._closed = False
        self._todo: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()
        for item in enumerate(requests):
            self._todo.put(item)
        for n in range(max(1, min(workers, self._count))):
            threading.Thread(target=self._work, name=f"lookup-{n}", daemon=True).start()

    def _work(self) -> None:
        while not self._closed:
            try:
                index, request = self._todo.get_nowait()
            except queue.Empty:
                return
            if self.deadline is not None and self._clock() > self.deadline:
                result = self._spent()  # reached past the budget: no call at all
            else:
                result = self._identify(request)
                if self._on_done is not None:
                    self._on_done(index, result)
            self._settle(index, result)

    def _identify(self, request: Any) -> Any:
        try:
            return self.source.identify(request)
        except Exception as exc:  # a bug in one lookup must not sink the batch
            from modelimport.identify.hub.records import no_match

            return no_match(hub_error=f"lookup failed ({type(exc).__name__})")

    def _settle(self, index: int, result: Any) -> Any:
        """The first result for `index` wins: an answer after the budget is not used."""
        with self._lock:
            result = self._results.setdefault(index, result)
        self._done[index].set()
        return result

    def _spent(self) -> Any:
        from modelimport.identify.hub.records import no_match

        return no_match(hub_error=BUDGET_SPENT, source=getattr(self.source, "name", "hub"))

    def result(self, index: int) -> Any:
        """Lookup `index`'s result, waiting at most until the budget runs out."""
        timeout = None if self.deadline is None else max(0.0, self.deadline - self._clock())
        if not self._done[index].wait(timeout):
            return self._settle(index, self._spent())
        with self._lock:
            return self._results[index]

    def results(self) -> list[Any]:
        return [self.result(i) for i in range(self._count)]

    @property
    def spent(self) -> int:
        """How many lookups the budget cut short (so far)."""
        with self._lock:
            return sum(1 for r in self._results.values() if r.hub_error == BUDGET_SPENT)

    def close(self) -> None:
        """Start no further lookup; those running finish on their own (bounded by timeouts)."""
        self._closed = True


def identify_parallel(
    source: Any,
    requests: Sequence[Any],
    *,
    workers: int = LOOKUP_WORKERS,
    budget_s: float | None = LOOKUP_BUDGET_S,
) -> list[Any]:
    """Every request's result, in order, from `workers` concurrent lookups."""
    batch = LookupBatch(source, requests, workers=workers, budget_s=budget_s)
    try:
        return batch.results()
    finally:
        batch.close()
