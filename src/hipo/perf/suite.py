"""Runs the variants of a suite and measures them.

``process`` isolation (default on CPU): each variant lives in its own spawned worker process; the parent steps the
workers round-robin (one step each per round, rotating who goes first), so every variant is measured over the same
wall-clock span and a load spike of a shared machine hits all of them alike; each worker's peak RSS is its own. A
worker answers a step once it waits for the next one, so the work a training loop does after a step (logging,
checkpoints, the next batch) never overlaps another worker's step.
``inline`` (default on GPU): variants run one after another in this process; the peak is CUDA
``max_memory_allocated`` (or, on CPU, the RSS high-water mark reset before the variant: an upper bound, since
memory freed by an earlier variant may stay mapped).
"""

from __future__ import annotations

import gc
import multiprocessing as mp
import os
import time
import traceback
from dataclasses import asdict
from multiprocessing.connection import Connection
from typing import TYPE_CHECKING, Any

import torch

from hipo.perf.clock import StepResult
from hipo.perf.config import PerfConfig, SuiteConfig, VariantConfig, check_variant
from hipo.perf.memory import GIB, current_rss_bytes, peak_bytes, reset_peak
from hipo.perf.results import VariantResult
from hipo.perf.variant import VariantRunner, build_loss, resolve_device
from hipo.training.denormals import flush_denormals

if TYPE_CHECKING:
    from hipo.perf.train_loop import TrainLoopRunner
    from hipo.perf.trl_variant import TRLRunner

    Runner = VariantRunner | TRLRunner | TrainLoopRunner


def _set_threads(cfg: PerfConfig) -> None:
    torch.set_num_threads(cfg.threads or os.cpu_count() or 1)


def make_runner(cfg: PerfConfig, name: str, variant: VariantConfig) -> Runner:
    """The runner of ``variant``: the project's training step, ``hipo train``'s loop around it
    (``framework: hipo_train``) or TRL's ``DPOTrainer`` (``framework: trl``)."""
    if variant.framework == "trl":
        from hipo.perf.trl_variant import TRLRunner

        return TRLRunner(cfg, name, variant)
    if variant.framework == "hipo_train":
        from hipo.perf.train_loop import TrainLoopRunner

        return TrainLoopRunner(cfg, name, variant)
    return VariantRunner(cfg, name, variant)


def _finish(runner: Runner, steps: list[StepResult], memory_method: str, baseline: int) -> VariantResult:
    """The record of ``steps`` (warm-up steps included; they are dropped here, but step 0's loss is kept)."""
    timed = steps[runner.cfg.warmup_steps :]
    return VariantResult(
        variant=runner.name,
        settings=asdict(runner.variant),
        step_s=[s.seconds for s in timed],
        useful_tokens=[s.useful_tokens for s in timed],
        losses=[s.loss for s in timed],
        batch_index=[s.batch for s in timed],
        peak_memory_gib=peak_bytes(runner.device) / GIB,
        baseline_memory_gib=baseline / GIB,
        memory_method=memory_method,
        setup_s=runner.setup_s,
        reference_setup_s=runner.reference_setup_s,
        trainable_parameters=runner.trainable,
        device=str(runner.device),
        loop_step_s=[s.loop_seconds for s in timed if s.loop_seconds is not None],
        extra={"step0_loss": steps[0].loss if steps else float("nan"), **getattr(runner, "extra", {})},
    )


def _worker(conn: Connection, cfg: PerfConfig, name: str, variant: VariantConfig) -> None:
    """A spawned worker: build the variant, run one step per ``step`` command (answered once the worker waits for
    the next one), answer ``finish`` with the result."""
    try:
        flush_denormals()  # first, as the `hipo` command does (a spawned worker starts its own thread pool)
        _set_threads(cfg)
        baseline = current_rss_bytes()
        runner = make_runner(cfg, name, variant)
        conn.send(("ready", runner.setup_s))
        done: list[StepResult] = []
        answered = 0

        def answer() -> None:  # the step before is over, loop included: the parent may start another worker's
            nonlocal answered
            if answered < len(done):
                conn.send(("step", done[-1].seconds))
                answered = len(done)

        def wait_for_step() -> None:
            answer()
            command = conn.recv()
            if command != "step":
                raise RuntimeError(f"expected a step command, got {command!r}")

        steps = runner.run(cfg.warmup_steps + cfg.steps, wait_for_step, done.append)
        answer()
        command = conn.recv()
        if command != "finish":
            raise RuntimeError(f"expected the finish command, got {command!r}")
        conn.send(("result", _finish(runner, steps, "process VmHWM (whole worker)", baseline)))
        runner.close()
    except Exception:  # reported to the parent, which raises with the variant's name
        conn.send(("error", traceback.format_exc()))


def _receive(conn: Connection, name: str, expected: str) -> Any:
    kind, payload = conn.recv()
    if kind == "error":
        raise RuntimeError(f"perf variant {name!r} failed in its worker:\n{payload}")
    if kind != expected:
        raise RuntimeError(f"perf variant {name!r}: expected {expected!r} from the worker, got {kind!r}")
    return payload


def run_in_processes(cfg: PerfConfig, variants: dict[str, VariantConfig], log: Any = print) -> list[VariantResult]:
    """All variants in spawned workers, stepped round-robin (see the module docstring)."""
    context = mp.get_context("spawn")
    workers: dict[str, tuple[Any, Connection]] = {}
    try:
        for name, variant in variants.items():
            parent, child = context.Pipe()
            process = context.Process(target=_worker, args=(child, cfg, name, variant), daemon=True)
            process.start()
            workers[name] = (process, parent)
        for name, (_, conn) in workers.items():
            setup = _receive(conn, name, "ready")
            log(f"  {name}: ready (setup {setup:.1f} s)")
        names = list(workers)
        total = cfg.warmup_steps + cfg.steps
        for round_index in range(total):
            order = names[round_index % len(names) :] + names[: round_index % len(names)]
            for name in order:
                conn = workers[name][1]
                conn.send("step")
                seconds = _receive(conn, name, "step")
                phase = "warm-up" if round_index < cfg.warmup_steps else "timed"
                log(f"  round {round_index + 1}/{total} ({phase}) {name}: {seconds:.3f} s")
        results = []
        for name in names:
            process, conn = workers[name]
            conn.send("finish")
            results.append(_receive(conn, name, "result"))
            process.join(timeout=60)
        return results
    finally:
        for process, _ in workers.values():
            if process.is_alive():
                process.terminate()


def run_inline(cfg: PerfConfig, variants: dict[str, VariantConfig], log: Any = print) -> list[VariantResult]:
    """Variants one after another in this process."""
    _set_threads(cfg)
    device = resolve_device(cfg.device)
    method = "cuda max_memory_allocated" if device.type == "cuda" else "process VmHWM since reset (upper bound)"
    results = []
    for name, variant in variants.items():
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
        baseline = torch.cuda.memory_allocated(device) if device.type == "cuda" else current_rss_bytes()
        reset_peak(device)
        runner = make_runner(cfg, name, variant)

        def log_step(result: StepResult, name: str = name) -> None:
            log(f"  {name}: step {result.seconds:.3f} s")

        steps = runner.run(cfg.warmup_steps + cfg.steps, lambda: None, log_step)
        results.append(_finish(runner, steps, method, baseline))
        runner.close()
        del runner
    return results


def run_same_process_losses(cfg: PerfConfig, log: Any = print) -> list[VariantResult]:
    """``cfg.suite.same_process_losses`` on one model and the same batches, interleaved step by step.

    See :class:`hipo.perf.config.SuiteConfig`; peak memory is the shared process's, not per loss.
    """
    losses = list(cfg.suite.same_process_losses)
    _set_threads(cfg)
    # the shared model's reference serves the losses that read one (a reference-free loss runs none)
    runner = VariantRunner(cfg, "same", VariantConfig(loss=losses[0].partition(":")[0]))
    modules = {name: build_loss(name, list(cfg.segments)) for name in losses}
    if not all(module.paired for module in modules.values()):
        raise ValueError(f"perf.same_process_losses must be paired losses (dpo, hipo, LOSS:VARIANT), got {losses}")
    steps: dict[str, list[StepResult]] = {name: [] for name in losses}
    for index in range(cfg.warmup_steps + cfg.steps):
        position, _ = runner.next_batch()
        for name in losses[index % len(losses) :] + losses[: index % len(losses)]:
            runner.module.loss_fn = modules[name]
            result = runner.step(position)
            log(f"  same process, step {index + 1}, {name}: {result.seconds:.3f} s")
            steps[name].append(result)
    results: list[VariantResult] = []
    for name in losses:
        record = _finish(runner, steps[name], "shared process (one model for all losses)", 0)
        loss, variant = modules[name], getattr(modules[name], "variant", "sigmoid")
        settings = {**asdict(runner.variant), "loss": name.partition(":")[0], "loss_variant": variant}
        record.variant, record.settings = f"same/{name}", {**settings, "needs_reference": loss.needs_reference}
        results.append(record)
    return results


def run_same_process_loop(cfg: PerfConfig, variant: VariantConfig, log: Any = print) -> list[VariantResult]:
    """``hipo train``'s loop and the bare step on one model, in this process (see
    :class:`hipo.perf.config.SuiteConfig`): records ``same/bare`` (a bare step's loop span is the step itself) and
    ``same/loop``; peak memory is the shared process's."""
    check_variant("same_process_loop", variant)
    if variant.framework != "hipo_train":
        raise ValueError(f"perf.suite.same_process_loop.framework must be hipo_train, got {variant.framework!r}")
    from hipo.perf.train_loop import TrainLoopRunner

    _set_threads(cfg)
    runner = TrainLoopRunner(cfg, "same/loop", variant)
    bare: list[StepResult] = []

    def bare_step() -> None:  # the batch the loop's next step takes, stepped by hand
        started = time.perf_counter()
        result = runner.bare.step(len(bare) % len(runner.bare.batches))
        result.loop_seconds = time.perf_counter() - started
        bare.append(result)

    def log_step(result: StepResult) -> None:
        log(f"  same process, step {len(bare)}: bare {bare[-1].seconds:.3f} s, loop {result.seconds:.3f} s")

    try:
        loop = runner.run(cfg.warmup_steps + cfg.steps, bare_step, log_step)
    finally:
        runner.close()
    method = "shared process (one model for the bare step and the loop)"
    records = [_finish(runner, bare, method, 0), _finish(runner, loop, method, 0)]
    records[0].variant, records[0].settings = "same/bare", {**asdict(runner.variant), "framework": "hipo"}
    records[0].extra = {"step0_loss": records[0].extra["step0_loss"]}
    return records


def record_names(suite: SuiteConfig) -> list[str]:
    """The records a run of ``suite`` produces, in order (what its ratios may name)."""
    names = [*suite.variants, *(f"same/{loss}" for loss in suite.same_process_losses)]
    return names + (["same/bare", "same/loop"] if suite.same_process_loop is not None else [])


def run_suite(cfg: PerfConfig, log: Any = print) -> list[VariantResult]:
    """Runs ``cfg.suite.variants`` under the configured isolation, then the same-process comparisons."""
    suite = cfg.suite
    if not suite.variants and not suite.same_process_losses and suite.same_process_loop is None:
        raise ValueError(
            "perf.suite.variants, perf.suite.same_process_losses and perf.suite.same_process_loop are empty: "
            "nothing to run"
        )
    if cfg.steps < 1 or cfg.warmup_steps < 0 or cfg.pairs_per_step < 1 or cfg.num_batches < 1:
        raise ValueError("perf.steps, perf.pairs_per_step and perf.num_batches must be >= 1, warmup_steps >= 0")
    isolation = cfg.isolation
    if isolation == "auto":
        isolation = "inline" if resolve_device(cfg.device).type == "cuda" else "process"
    if isolation not in ("process", "inline"):
        raise ValueError(f"perf.isolation must be auto, process or inline, got {cfg.isolation!r}")
    run = run_in_processes if isolation == "process" else run_inline
    results = run(cfg, dict(cfg.suite.variants), log) if cfg.suite.variants else []
    if cfg.suite.same_process_losses:
        results += run_same_process_losses(cfg, log)
    if cfg.suite.same_process_loop is not None:
        results += run_same_process_loop(cfg, cfg.suite.same_process_loop, log)
    return results
