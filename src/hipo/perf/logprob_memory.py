"""Peak memory of the selected-token log-prob computation vs the naive fp32 log-softmax.

Each measurement runs in a fresh spawned process (nothing retained from another): build the model, build a padded
batch of ``rows x length`` random tokens (all but the first token of each row scored, random segment ids), then reset
the peak counter and run ONE forward + backward of:

* ``decoder``: the decoder alone (loss = mean of the last hidden states) -- what every method shares;
* ``chunked``: :func:`hipo.models.logprobs.token_logps` (chunked LM head, checkpointed chunks);
* ``naive``: :func:`hipo.models.logprobs.naive_token_logps` (full [R, T, V] fp32 logits and log-softmax).

The log-prob computation's own peak is ``peak(method) - peak(decoder)``; both that ratio and the whole-pass ratio
are reported.
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import torch

from hipo.data.batch import TokenBatch
from hipo.perf.config import LogprobMemoryConfig, ShapeConfig
from hipo.perf.memory import GIB, current_rss_bytes, peak_bytes, reset_peak

METHODS = ("decoder", "chunked", "naive")


def memory_batch(rows: int, length: int, vocab_size: int, num_segments: int = 3, seed: int = 0) -> TokenBatch:
    """A padded batch with no padding: ``rows`` sequences of ``length`` random tokens, tokens 1.. scored."""
    generator = torch.Generator().manual_seed(seed)
    segments = torch.randint(0, num_segments + 1, (rows, length), generator=generator)
    segments[:, 0] = -1
    return TokenBatch(
        input_ids=torch.randint(3, vocab_size, (rows, length), generator=generator),
        attention_mask=torch.ones(rows, length, dtype=torch.long),
        position_ids=torch.arange(length).repeat(rows, 1),
        segment_ids=segments,
        sequence_ids=torch.arange(rows)[:, None].repeat(1, length),
        example_ids=torch.arange(rows // 2 or 1),
        num_sequences=rows,
        num_segments=num_segments,
    )


def measure_once(method: str, shape: ShapeConfig, cfg: LogprobMemoryConfig, device: str, threads: int | None) -> dict:
    """Forward + backward of ``method`` in THIS process; peak bytes above the pre-pass baseline."""
    from hipo.models.logprobs import hidden_states, naive_token_logps, token_logps
    from hipo.perf.shapes import build_shape_model

    if threads:
        torch.set_num_threads(threads)
    dev = torch.device(device)
    with dev:
        model = build_shape_model(shape, torch.float32)
    model.train()
    batch = memory_batch(cfg.rows, cfg.length, shape.vocab_size).to(dev)
    baseline = torch.cuda.memory_allocated(dev) if dev.type == "cuda" else current_rss_bytes()
    reset_peak(dev)
    if method == "decoder":
        loss = hidden_states(model, batch).float().pow(2).mean()
    elif method == "chunked":
        loss = token_logps(model, batch, chunk_size=cfg.chunk_size).sum()
    elif method == "naive":
        loss = naive_token_logps(model, batch).sum()
    else:
        raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")
    loss.backward()
    return {"method": method, "peak_gib": (peak_bytes(dev) - baseline) / GIB, "loss": float(loss.detach())}


def _child(queue: Any, *args: Any) -> None:
    try:
        queue.put(measure_once(*args))
    except Exception as error:  # pragma: no cover - reported by the parent
        queue.put({"error": repr(error)})


def measure_logprob_memory(
    shape: ShapeConfig, cfg: LogprobMemoryConfig, device: str = "cpu", threads: int | None = None
) -> dict[str, Any]:
    """Runs the three methods, each in a fresh process; returns peaks (GiB) and the ratios chunked / naive."""
    context = mp.get_context("spawn")
    peaks: dict[str, float] = {}
    for method in METHODS:
        queue = context.Queue()
        process = context.Process(target=_child, args=(queue, method, shape, cfg, device, threads))
        process.start()
        result = queue.get()
        process.join()
        if "error" in result:
            raise RuntimeError(f"log-prob memory measurement {method!r} failed: {result['error']}")
        peaks[method] = result["peak_gib"]
    head_chunked, head_naive = peaks["chunked"] - peaks["decoder"], peaks["naive"] - peaks["decoder"]
    return {
        "rows": cfg.rows,
        "length": cfg.length,
        "chunk_size": cfg.chunk_size,
        "peak_gib": peaks,
        "logprob_peak_gib": {"chunked": head_chunked, "naive": head_naive},
        "ratio_logprob": head_chunked / head_naive if head_naive > 0 else float("nan"),
        "ratio_whole_pass": peaks["chunked"] / peaks["naive"] if peaks["naive"] > 0 else float("nan"),
        "target": cfg.target,
    }
