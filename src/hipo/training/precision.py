"""``trainer.precision=auto``: bf16 mixed precision where the hardware computes bf16 natively, else fp32.

Mixed precision (Lightning's ``bf16-mixed``) keeps fp32 master weights and optimizer states and runs the forward
passes under ``torch.autocast``. On a CPU it pays only where the cores have bf16 instructions (AVX512-BF16 or
AMX-BF16, e.g. Intel Sapphire Rapids, AMD Zen 4); elsewhere oneDNN emulates bf16 and each autocast cast is extra
work, so ``auto`` keeps fp32 there (measured: experiments/perf/README.md, "CPU mixed precision").
"""

from __future__ import annotations

import platform
from pathlib import Path

AUTO = "auto"
CPU_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The instruction-set flags of the first CPU listed in ``cpuinfo`` (empty where there is no such file)."""
    try:
        text = cpuinfo.read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith(("flags", "Features")):
            return set(line.split(":", 1)[1].split())
    return set()


def cpu_has_native_bf16(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Whether this CPU computes bf16 in hardware (``/proc/cpuinfo`` flags; oneDNN's own check elsewhere)."""
    if platform.system() == "Linux":
        return bool(cpu_flags(cpuinfo) & set(CPU_BF16_FLAGS))
    import torch

    return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def resolve_precision(precision: str, accelerator: str) -> tuple[str, str]:
    """(the Lightning precision to use, why) for ``trainer.precision``; anything but ``auto`` is kept as given.

    ``auto`` -> ``bf16-mixed`` on a GPU that supports bf16 or a CPU with native bf16, else ``32-true``.
    """
    if precision != AUTO:
        return precision, "as configured"
    import torch

    on_gpu = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    if on_gpu:
        if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
            return "bf16-mixed", "the GPU supports bf16"
        return "32-true", "the GPU has no bf16 support"
    if cpu_has_native_bf16():
        return "bf16-mixed", f"the CPU has native bf16 ({' or '.join(CPU_BF16_FLAGS)})"
    return "32-true", f"the CPU has no native bf16 (no {' or '.join(CPU_BF16_FLAGS)} flag): emulated bf16 is slower"


def matmul_gflops(dtype: str, size: tuple[int, int, int] = (256, 576, 1536), repeats: int = 3) -> float:
    """Measured CPU matmul throughput (GFLOP/s) of ``[m, k] @ [k, n]`` in ``dtype`` (float32 | bfloat16), with the
    current torch threads: the evidence behind ``auto`` (emulated bf16 runs tens of times slower than fp32)."""
    import time

    import torch

    m, k, n = size
    a = torch.randn(m, k).to(getattr(torch, dtype))
    b = torch.randn(k, n).to(getattr(torch, dtype))
    torch.mm(a, b)
    started = time.perf_counter()
    for _ in range(repeats):
        torch.mm(a, b)
    seconds = (time.perf_counter() - started) / repeats
    return 2 * m * k * n / seconds / 1e9
