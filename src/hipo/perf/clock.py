"""The clock every perf runner times its steps with: the step itself, and the whole loop around it.

A **step** runs from the batch being ready to after the optimizer step (:meth:`StepClock.begin` ..
:meth:`StepClock.end`). The **loop** span of a step runs from its start to the start of the next step (or to
:meth:`StepClock.finish` for the last one): the step plus everything the training loop does between two steps
(metric logging, callbacks, checkpoints, progress bar, fetching and collating the next batch). The wait for the
suite's go-ahead (``before_step``, the round-robin of isolated workers) is in neither.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch


def synchronize(device: torch.device) -> None:
    """Waits for the device's queued work (CUDA); nothing on a CPU."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class StepResult:
    """Duration (s) and useful tokens of one step, its loss value and which of the distinct batches it took.

    ``loop_seconds``: the step's loop span (see the module docstring); None where no loop ran around it.
    """

    seconds: float
    useful_tokens: int
    loss: float
    batch: int
    loop_seconds: float | None = None


class StepClock:
    """Times the steps of one runner (see the module docstring).

    Args:
        device: synchronized before each clock reading.
        before_step: called before a step's clock starts (the suite's wait for its turn).
        after_step: called with each step's result once it is timed.
    """

    def __init__(
        self, device: torch.device, before_step: Callable[[], None], after_step: Callable[[StepResult], None]
    ) -> None:
        self.device, self.before_step, self.after_step = device, before_step, after_step
        self.results: list[StepResult] = []
        self._started = 0.0

    def begin(self) -> None:
        """A step starts: the previous step's loop span ends, the suite's wait runs, then the clock starts."""
        self._close_loop()
        self.before_step()
        synchronize(self.device)
        self._started = time.perf_counter()

    def end(self, useful_tokens: int, loss: float, batch: int) -> StepResult:
        """The step started by :meth:`begin` is done (after its optimizer step)."""
        synchronize(self.device)
        return self.add(StepResult(time.perf_counter() - self._started, useful_tokens, loss, batch))

    def add(self, result: StepResult) -> StepResult:
        """Records a step its runner timed itself (between :meth:`begin` and the next one)."""
        self.results.append(result)
        self.after_step(result)
        return result

    def finish(self) -> list[StepResult]:
        """The loop is over: the last step's loop span ends (once; later calls change nothing)."""
        self._close_loop()
        return self.results

    def _close_loop(self) -> None:
        if self.results and self.results[-1].loop_seconds is None:
            synchronize(self.device)
            self.results[-1].loop_seconds = time.perf_counter() - self._started
