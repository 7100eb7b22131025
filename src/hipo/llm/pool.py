"""Many LLM requests at once: at most N in flight, a requests-per-minute limiter, a progress bar and counters.

``RequestPool.run(task, items)`` calls ``task(item)`` for every item on a thread pool of ``concurrency`` workers
and returns the outcomes in item order: the task's result, or the exception it raised when that exception is one
of ``failures`` (anything else propagates). Results are expected to carry ``cached`` (bool) and ``tokens`` (int),
as :class:`hipo.llm.client.ChatResult` does. A tqdm bar shows done / failed / cached counts and tokens used; the
same counts are kept in a :class:`PoolStats` for a summary line. Ctrl+C cancels the requests not yet started.

``RateLimiter`` spaces request starts ``60 / requests_per_minute`` seconds apart across threads; the chat client
calls it before each HTTP attempt (so retries count and cache hits do not).
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

from tqdm.auto import tqdm

X = TypeVar("X")
R = TypeVar("R", bound="Result")


class Result(Protocol):
    """What the pool reads from a task's result."""

    @property
    def cached(self) -> bool: ...

    @property
    def tokens(self) -> int: ...


class RateLimiter:
    """Spaces calls to :meth:`wait` at least ``60 / requests_per_minute`` seconds apart (thread-safe)."""

    def __init__(self, requests_per_minute: float) -> None:
        if requests_per_minute <= 0:
            raise ValueError(f"requests_per_minute must be positive, got {requests_per_minute}")
        self.interval_s = 60.0 / requests_per_minute
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        """Blocks until this caller's start slot (the first call returns at once)."""
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval_s
        if start > now:
            time.sleep(start - now)


@dataclass
class PoolStats:
    """Counts of finished tasks (``done`` includes those answered from the cache) and the tokens they used."""

    done: int = 0
    failed: int = 0
    cached: int = 0
    tokens: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def requested(self) -> int:
        """Tasks that needed the server (not answered from the cache)."""
        return self.done + self.failed - self.cached

    def record(self, outcome: Any) -> None:
        """Counts one outcome: a result (``cached``, ``tokens``) or an exception (by its ``kind`` or class name;
        its ``tokens``, if any, are added too: unusable replies are billed)."""
        with self._lock:
            self.tokens += int(getattr(outcome, "tokens", 0) or 0)
            if isinstance(outcome, BaseException):
                self.failed += 1
                self.failures[str(getattr(outcome, "kind", type(outcome).__name__))] += 1
                return
            self.done += 1
            self.cached += int(bool(outcome.cached))

    def add(self, other: PoolStats) -> None:
        """Adds another object's counts to this one."""
        with self._lock:
            self.done += other.done
            self.failed += other.failed
            self.cached += other.cached
            self.tokens += other.tokens
            self.failures.update(other.failures)

    def postfix(self) -> str:
        """The progress bar's postfix."""
        return f"done={self.done} failed={self.failed} cached={self.cached} tokens={self.tokens}"

    def summary(self, label: str, seconds: float | None = None) -> str:
        """One line for the log: ``label: 24 done (12 cached), 1 failed (http: 1), 3120 tokens in 2.1 s``."""
        causes = ", ".join(f"{kind}: {n}" for kind, n in sorted(self.failures.items()))
        failed = f"{self.failed} failed" + (f" ({causes})" if causes else "")
        timing = f" in {seconds:.1f} s" if seconds is not None else ""
        return f"{label}: {self.done} done ({self.cached} cached), {failed}, {self.tokens} tokens{timing}"


class RequestPool:
    """Runs a task over many items with at most ``concurrency`` in flight, with a progress bar and counters.

    Args:
        concurrency: the most tasks running at once (threads).
        progress: show a tqdm progress bar.
        description: the bar's label.
        failures: exception types recorded as failed outcomes; any other exception propagates.
    """

    def __init__(
        self,
        concurrency: int = 16,
        progress: bool = True,
        description: str = "LLM requests",
        failures: tuple[type[BaseException], ...] = (Exception,),
    ) -> None:
        if concurrency <= 0:
            raise ValueError(f"concurrency must be positive, got {concurrency}")
        self.concurrency = concurrency
        self.progress = progress
        self.description = description
        self.failures = failures

    def run(
        self, task: Callable[[X], R], items: Sequence[X], stats: PoolStats | None = None
    ) -> list[R | BaseException]:
        """``task(item)`` for each item, in item order; failures (see ``failures``) are returned, not raised.

        Args:
            task: called once per item, from worker threads.
            items: the inputs.
            stats: counters to add to (a new :class:`PoolStats` when None; read it back from the caller's object).
        """
        stats = stats if stats is not None else PoolStats()
        outcomes: list[Any] = [None] * len(items)
        if not items:
            return outcomes
        executor = ThreadPoolExecutor(max_workers=min(self.concurrency, len(items)), thread_name_prefix="llm")
        bar = tqdm(total=len(items), desc=self.description, unit="req", disable=not self.progress, leave=True)
        try:
            futures: dict[Future[R], int] = {executor.submit(task, item): i for i, item in enumerate(items)}
            for future in as_completed(futures):
                outcomes[futures[future]] = self._outcome(future)
                stats.record(outcomes[futures[future]])
                bar.set_postfix_str(stats.postfix(), refresh=False)
                bar.update(1)
        finally:  # on Ctrl+C (or a task's unexpected error) the queued tasks are dropped, running ones finish
            bar.close()
            executor.shutdown(wait=True, cancel_futures=True)
        return outcomes

    def _outcome(self, future: Future[R]) -> R | BaseException:
        """The future's result, or its exception when that is a recorded failure."""
        try:
            return future.result()
        except self.failures as error:
            return error
