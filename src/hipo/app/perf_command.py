"""`hipo perf`: times real training steps of several variants side by side and prints/writes the comparison."""

from __future__ import annotations

import datetime as dt
import os
import platform
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from hipo.perf.config import PerfConfig
from hipo.perf.logprob_memory import measure_logprob_memory
from hipo.perf.results import compute_ratios, format_table, write_json
from hipo.perf.shapes import parameter_count
from hipo.perf.suite import run_suite
from hipo.perf.variant import resolve_device
from hipo.training.precision import CPU_BF16_FLAGS, cpu_flags, cpu_has_native_bf16, matmul_gflops


def to_perf_config(cfg: DictConfig) -> PerfConfig:
    """The ``perf`` node as a typed :class:`PerfConfig` (validated against the schema)."""
    node = cfg.perf if "perf" in cfg else cfg
    merged = OmegaConf.merge(OmegaConf.structured(PerfConfig), node)
    perf = OmegaConf.to_object(merged)
    assert isinstance(perf, PerfConfig)
    return perf


def machine_description(device: torch.device) -> dict[str, Any]:
    """What ran the measurement (for the JSON and the experiment log)."""
    info: dict[str, Any] = {
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "platform": platform.platform(),
        "processor": platform.processor(),
        "torch": torch.__version__,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "cpu_native_bf16": cpu_has_native_bf16(),
        "cpu_bf16_flags": sorted(cpu_flags() & set(CPU_BF16_FLAGS)),
        "cpu_avx512": any(flag.startswith("avx512") for flag in cpu_flags()),
        "cpu_matmul_gflops": {dtype: matmul_gflops(dtype) for dtype in ("float32", "bfloat16")},
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def perf_command(cfg: DictConfig) -> dict[str, Any]:
    """Runs the suite (and the log-prob memory check when enabled), prints the table, writes ``perf.out``.

    Returns:
        ``{"meta", "records", "ratios", "logprob_memory"}`` (the JSON payload).
    """
    perf = to_perf_config(cfg)
    device = resolve_device(perf.device)
    started = dt.datetime.now(dt.timezone.utc)
    print(
        f"hipo perf: shape {perf.shape.name} ({parameter_count(perf.shape) / 1e6:.1f}M params), "
        f"mix {perf.mix.name}, "
        f"suite {perf.suite.name}, {perf.pairs_per_step} pairs/step, {perf.warmup_steps} warm-up + {perf.steps} "
        f"timed steps, device {device}"
    )
    machine = machine_description(device)
    flops = machine["cpu_matmul_gflops"]
    print(
        f"cpu: native bf16 {'yes' if machine['cpu_native_bf16'] else 'no'}; matmul fp32 {flops['float32']:.1f} "
        f"GFLOP/s, bf16 {flops['bfloat16']:.1f} GFLOP/s ({torch.get_num_threads()} threads)"
    )
    results = run_suite(perf)
    records = [r.record() for r in results]
    by_name = {r["variant"]: r for r in records}
    ratios = compute_ratios(by_name, list(perf.suite.ratios))
    logprob_memory = None
    if perf.logprob_memory.enabled:
        print(f"log-prob memory: {perf.logprob_memory.rows} x {perf.logprob_memory.length} tokens ...")
        logprob_memory = measure_logprob_memory(perf.shape, perf.logprob_memory, str(device), perf.threads)
    print()
    print(format_table(records, ratios))
    if logprob_memory is not None:
        verdict = "MET" if logprob_memory["ratio_logprob"] <= logprob_memory["target"] else "NOT MET"
        print(
            f"  logprob_memory: chunked / naive fp32 log-softmax peak = {logprob_memory['ratio_logprob']:.3f} "
            f"(log-prob part: {logprob_memory['logprob_peak_gib']['chunked']:.2f} vs "
            f"{logprob_memory['logprob_peak_gib']['naive']:.2f} GiB; whole forward+backward "
            f"{logprob_memory['ratio_whole_pass']:.3f})  target <= {logprob_memory['target']}  {verdict}"
        )
    payload = {
        "meta": {
            "date": started.isoformat(timespec="seconds"),
            "config": OmegaConf.to_container(OmegaConf.structured(perf), resolve=True),
            "parameters": parameter_count(perf.shape),
            "machine": {**machine, "load_average_end": os.getloadavg() if hasattr(os, "getloadavg") else None},
        },
        "records": records,
        "ratios": ratios,
        "logprob_memory": logprob_memory,
    }
    if perf.out:
        path = write_json(perf.out, payload)
        print(f"wrote {path}")
    return payload


def main() -> None:
    """``python -m hipo.app.perf_command [overrides]``: ``hipo perf``'s app."""
    import hydra

    from hipo.training.denormals import flush_denormals

    flush_denormals()  # before the first torch op (see hipo.training.denormals)

    from hipo.cli import config_dir
    from hipo.config.register import register_configs

    register_configs()
    hydra.main(version_base="1.3", config_path=config_dir(), config_name="perf")(perf_command)()


if __name__ == "__main__":
    main()
