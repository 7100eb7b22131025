"""Subnormal floats flushed to zero on the CPU, for training and for `hipo perf` alike.

A preference loss whose sigmoid saturates (CPO on summed log-probs, DPO late in training) passes gradients of
~1e-40 back through the whole model; x86 cores compute with such subnormal numbers tens of times slower than with
normal ones. Measured (experiments/perf/README.md, "Reference-free variants"): a CPO step on SmolLM2-135M took 8.8 s
with subnormals and 4.8 s flushed, the same loss to 1e-3. Flushing changes values below 1.2e-38 (fp32) to 0, which
no loss or metric here can see.

The flag is per thread, and a new thread inherits its creator's: set in the main thread before the first torch op
creates the intra-op thread pool, it holds in every thread; set later, the pool's threads keep computing with
subnormals (measured: half of a parallel op's results). So the ``hipo`` command (train, perf, iterate), ``python -m
hipo.app.perf_command``, DDP worker ranks and perf workers set it first thing; ``train(cfg)`` called from Python
leaves the caller's process as it is (call this first to get the same).
"""

from __future__ import annotations

import torch


def flush_denormals() -> bool:
    """Sets the CPU's flush-to-zero mode for this process; whether the CPU supports it (x86 with SSE3 does)."""
    return bool(torch.set_flush_denormal(True))
