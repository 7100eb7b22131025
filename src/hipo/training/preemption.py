"""Stopping on a signal: save at the next step boundary, mark the run KILLED, exit ``128 + signal``.

Clusters preempt with SIGTERM (SLURM, Kubernetes) or a user signal ahead of a time limit (``--signal=USR1@90``;
submitit's launcher uses USR2); a person presses Ctrl+C (SIGINT). :class:`StopRequests` owns these signals for the
whole job. Outside training a stop is immediate (:class:`~hipo.errors.JobInterrupted` is raised where the job is);
during training it is deferred: :class:`StopAtStepBoundary` finishes the current optimizer step, the ranks agree
(one all-reduce per step, so a signal delivered to any rank stops all of them at the same step), the checkpoint is
written (every rank joins the save), ``fit`` ends after recording the step's metrics, and the job raises
``JobInterrupted``. A second Ctrl+C during that wait stops
at once, without a checkpoint. Under submitit (``hydra/launcher=slurm``) the previous handler of the signal --
submitit's, which requeues the job -- is called after the job has recorded its state (:meth:`StopRequests.chain`).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback

from hipo.distributed.processes import any_rank
from hipo.errors import JobInterrupted

log = logging.getLogger(__name__)

_CURRENT: contextvars.ContextVar[StopRequests | None] = contextvars.ContextVar("hipo_stop_requests", default=None)


def stop_signals() -> tuple[signal.Signals, ...]:
    """SIGTERM, SIGUSR1, SIGINT, and submitit's preemption signal (USR2 by default) when running under it."""
    signals = [signal.SIGTERM, signal.SIGUSR1, signal.SIGINT]
    if os.environ.get("SUBMITIT_EXECUTOR"):
        name = os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2")
        extra = getattr(signal, name if name.startswith("SIG") else f"SIG{name}")
        if extra not in signals:
            signals.append(extra)
    return tuple(signals)


class StopRequests:
    """The job's handlers of :func:`stop_signals` (install with ``with requests.installed():``).

    Inside that block :meth:`current` returns them: the stop callback built from config
    (``trainer.callbacks.stop_at_step_boundary``) reads the job's requests there, as a signal handler is the
    process's own and not a config value.

    Attributes:
        requested: the signal that asked for a stop, or None.
        deferring: True while training: a stop waits for the next step boundary.
    """

    def __init__(self) -> None:
        self.requested: int | None = None
        self.deferring = False
        self._previous: dict[int, Any] = {}

    @staticmethod
    def current() -> StopRequests:
        """The requests of the enclosing :meth:`installed` block (of this thread).

        Raises:
            RuntimeError: outside such a block (a stop callback there would never see a signal).
        """
        requests = _CURRENT.get()
        if requests is None:
            raise RuntimeError("no StopRequests installed: build the Trainer inside `with StopRequests().installed():`")
        return requests

    @contextlib.contextmanager
    def installed(self) -> Iterator[StopRequests]:
        """Installs the handlers (main thread only), makes these the :meth:`current` requests, and restores the
        previous handlers and requests on exit."""
        token = _CURRENT.set(self)
        try:
            if threading.current_thread() is not threading.main_thread():
                yield self
                return
            self._previous = {int(s): signal.getsignal(s) for s in stop_signals()}
            self.install()
            try:
                yield self
            finally:
                for signum, handler in self._previous.items():
                    signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        finally:
            _CURRENT.reset(token)

    def install(self) -> None:
        """(Re)installs this object's handler for every stop signal (Lightning replaces SIGTERM's in ``fit``)."""
        if threading.current_thread() is threading.main_thread():
            for signum in stop_signals():
                signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if signum == signal.SIGINT and self.requested == signal.SIGINT:
            raise JobInterrupted(signum)  # a second Ctrl+C: stop now, without a checkpoint
        first = self.requested is None
        if first or signum != signal.SIGINT:
            self.requested = signum
        if not self.deferring:
            raise JobInterrupted(signum)
        if first:
            hint = " (Ctrl+C again to stop at once, without a checkpoint)" if signum == signal.SIGINT else ""
            log.warning("%s received: stopping after the current training step%s", name, hint)

    def raise_if_requested(self) -> None:
        """Raises :class:`JobInterrupted` for a stop requested while deferring."""
        if self.requested is not None:
            raise JobInterrupted(self.requested)

    @contextlib.contextmanager
    def deferred(self) -> Iterator[None]:
        """Stops wait for a step boundary inside the block; a stop requested meanwhile is raised at its end."""
        self.deferring = True
        try:
            yield
        finally:
            self.deferring = False
        self.raise_if_requested()

    def chain(self, signum: int) -> None:
        """Calls the handler that was installed before this object's for ``signum`` (e.g. submitit's requeue)."""
        previous = self._previous.get(int(signum))
        if callable(previous) and previous not in (signal.default_int_handler,):
            previous(signum, None)


class StopAtStepBoundary(Callback):
    """Ends training at the first optimizer-step boundary after a stop request, with a checkpoint.

    Args:
        checkpoint_path: where the checkpoint goes (``checkpoints/last.ckpt``, what ``resume=auto`` picks).
        requests: the job's stop requests (default: :meth:`StopRequests.current`, those installed while the
            callback is built).
    """

    def __init__(self, checkpoint_path: str | Path, requests: StopRequests | None = None) -> None:
        self.requests = requests if requests is not None else StopRequests.current()
        self.checkpoint_path = Path(checkpoint_path)
        self._step_at_batch_start = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.requests.install()  # Lightning installed its own SIGTERM handler when fit started

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        self._step_at_batch_start = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if trainer.global_step == self._step_at_batch_start:
            return  # inside a gradient accumulation cycle: not a consistent point
        signum = self._agreed_signal()
        if signum is None:
            return
        trainer.save_checkpoint(self.checkpoint_path)
        log.warning("stopping at step %d; checkpoint written to %s", trainer.global_step, self.checkpoint_path)
        self.requests.requested = signum  # every rank raises when fit returns (StopRequests.deferred)
        trainer.should_stop = True  # Lightning still records this step's metrics, then ends fit

    def _agreed_signal(self) -> int | None:
        """The stop signal if any rank has one (the ranks must stop at the same step)."""
        local = self.requests.requested
        if not any_rank(local is not None):
            return None
        return local if local is not None else int(signal.SIGTERM)
