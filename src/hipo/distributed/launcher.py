"""HiPO's own launcher for a multi-process job on one node: the ``hipo`` process is rank 0, it starts the others.

Lightning's subprocess launcher re-executes ``sys.argv`` for every rank, which cannot work from the ``hipo``
command (``sys.argv`` holds ``hipo train``), repeats the whole command in each rank (one MLflow run per rank) and
cannot serve a job inside a sweep. HiPO instead starts ``devices - 1`` workers AFTER rank 0 has validated the
config and prepared the data, each running ``python -m hipo.distributed.worker`` on this job's resolved config
(passed in the environment, never written to disk), with ``RANK``/``LOCAL_RANK``/``WORLD_SIZE``/``MASTER_*`` set
as torchrun would. Lightning then sees processes created externally and launches nothing.

Workers die with their parent (``PR_SET_PDEATHSIG`` on Linux), so a ``kill -9`` of the job leaves no orphan
stuck in a collective. A watcher thread notices a worker that exits with an error while rank 0 still runs: the
job cannot finish (rank 0 would wait in the next collective for up to 30 minutes), so it reports the failure
through ``on_failure`` (the training job marks its MLflow run FAILED there) and ends the whole job.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)

CONFIG_ENV = "HIPO_WORKER_CONFIG"
PARENT_ENV = "HIPO_WORKER_OF"
_PR_SET_PDEATHSIG = 1
# A worker that stopped on a preemption signal exits 128 + signal: rank 0 stops at the same step (the ranks agree
# on stopping), so that is not a failure for the watcher.
_INTERRUPTED_CODES = {128 + s for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_threads_per_process(processes: int) -> int:
    """Intra-op threads of each of ``processes`` ranks on this node: the cores shared out (``OMP_NUM_THREADS`` wins).

    Lightning's own launcher does the same; without it every rank takes every core and a 2-process CPU job ran
    many times slower than one process.
    """
    configured = os.environ.get("OMP_NUM_THREADS")
    if configured and configured.isdigit() and int(configured) > 0:
        return int(configured)
    return max(1, (os.cpu_count() or 1) // processes)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the kernel sends SIGKILL to this process when its parent dies."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except OSError:
        pass


class WorkerGroup:
    """Ranks ``1..world_size-1`` of a one-node job, started next to this process (rank 0).

    Use as a context manager: on entry the workers start and this process's environment becomes rank 0's; on a
    normal exit it waits for them (they finish the same job), on an exception it stops them; the environment is
    restored either way (a sweep runs the next job in the same process).

    Args:
        cfg: the job's config; resolved and handed to every worker.
        world_size: processes in the job, this one included.
        on_failure: called (from the watcher thread) with a message when a worker fails while rank 0 runs; the
            job then ends with exit code 1.
        finish_timeout_s: how long a normal exit waits for the workers before stopping them.
    """

    def __init__(
        self,
        cfg: DictConfig,
        world_size: int,
        on_failure: Callable[[str], None] | None = None,
        finish_timeout_s: float = 300.0,
    ) -> None:
        if world_size < 2:
            raise ValueError(f"a worker group needs world_size >= 2, got {world_size}")
        self.config_yaml = OmegaConf.to_yaml(OmegaConf.to_container(cfg, resolve=True))
        self.world_size = world_size
        self.on_failure = on_failure
        self.finish_timeout_s = finish_timeout_s
        self.processes: list[subprocess.Popen[Any]] = []
        self._saved_env: dict[str, str | None] = {}
        self._saved_threads = torch.get_num_threads()
        self._stopping = threading.Event()

    # ---- lifecycle --------------------------------------------------------------------------------------------------
    def __enter__(self) -> WorkerGroup:
        rendezvous = {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(free_port()),
            "WORLD_SIZE": str(self.world_size),
            "NODE_RANK": "0",
        }
        threads = cpu_threads_per_process(self.world_size)
        for rank in range(1, self.world_size):
            env = {
                **os.environ,
                **rendezvous,
                "RANK": str(rank),
                "LOCAL_RANK": str(rank),
                "OMP_NUM_THREADS": str(threads),
            }
            env[CONFIG_ENV], env[PARENT_ENV] = self.config_yaml, str(os.getpid())
            command = [sys.executable, "-m", "hipo.distributed.worker"]
            preexec = _die_with_parent if sys.platform.startswith("linux") else None
            self.processes.append(subprocess.Popen(command, env=env, preexec_fn=preexec))  # noqa: PLW1509
        own = {**rendezvous, "RANK": "0", "LOCAL_RANK": "0", "HIPO_LAUNCHED": "1"}
        self._saved_env = {name: os.environ.get(name) for name in own}
        os.environ.update(own)
        self._saved_threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        threading.Thread(target=self._watch, name="hipo-worker-watcher", daemon=True).start()
        log.info("started %d worker process(es) for a %d-process job", self.world_size - 1, self.world_size)
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self._stopping.set()
        try:
            if exc_type is None:
                self._wait(self.finish_timeout_s)
            self.stop()
        finally:
            torch.set_num_threads(self._saved_threads)
            for name, value in self._saved_env.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value

    def _wait(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        for process in self.processes:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                log.warning("worker %d did not finish within %.0f s; stopping it", process.pid, timeout_s)
        failed = [(p.pid, p.returncode) for p in self.processes if p.returncode not in (0, None)]
        if failed:
            raise RuntimeError(f"worker process(es) failed: {', '.join(f'pid {p} exit {c}' for p, c in failed)}")

    def stop(self) -> None:
        """Stops workers still running: SIGTERM, then SIGKILL after 10 s."""
        running = [p for p in self.processes if p.poll() is None]
        for process in running:
            process.terminate()
        deadline = time.monotonic() + 10
        for process in running:
            try:
                process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _watch(self) -> None:
        while not self._stopping.wait(0.5):
            for rank, process in enumerate(self.processes, start=1):
                code = process.poll()
                if code is None or code == 0 or code in _INTERRUPTED_CODES:
                    continue
                if self._stopping.is_set():
                    return
                message = f"worker rank {rank} (pid {process.pid}) exited with code {code}"
                log.error("%s; ending the job", message)
                self._stopping.set()
                if self.on_failure is not None:
                    try:
                        self.on_failure(message)
                    except Exception as error:  # the job ends regardless
                        log.error("could not record the failure: %s", error)
                for other in self.processes:
                    if other.poll() is None:
                        other.kill()
                os._exit(1)
