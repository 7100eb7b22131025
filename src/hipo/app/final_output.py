"""``<output_dir>/final``: what `hipo eval` and continued training load -- written whole or not at all."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

from peft import PeftModel

from hipo.models.lora import save_adapter
from hipo.training.module import PreferenceModule

FINAL = "final"


def save_trained(module: PreferenceModule, tokenizer: Any, output_dir: Path, cfg: Any) -> Path:
    """The trained adapter (LoRA; never the frozen reference adapter) or model, the tokenizer and ``hipo.json``.

    Written into a temporary folder next to ``final/`` and swapped in, so a job stopped while saving (a preemption
    during a 7B save) leaves the previous ``final/`` or none, never a partial one.
    """
    target = output_dir / FINAL
    output_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output_dir, prefix=f".{FINAL}."))
    try:
        policy: Any = module.policy  # a transformers model or a PeftModel
        if isinstance(policy, PeftModel):
            save_adapter(policy, staging)
        else:
            policy.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        weights = current_weights(module)
        meta = {"base_model": cfg.model.name_or_path, "segments": list(cfg.segments), "weights": weights}
        (staging / "hipo.json").write_text(json.dumps(meta))
        if target.exists():
            old = output_dir / f".{FINAL}.old"
            shutil.rmtree(old, ignore_errors=True)
            target.rename(old)
            staging.rename(target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def current_weights(module: PreferenceModule) -> dict[str, float]:
    """The segment weights the loss uses now, by term name (empty for losses without segment weights)."""
    weights_module = module.loss_fn.weights
    if weights_module is None:
        return {}
    values = weights_module().detach().cpu().tolist()
    return {name: float(v) for name, v in zip([*module.segment_names, "whole"], values, strict=False)}
