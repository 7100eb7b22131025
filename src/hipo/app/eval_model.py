"""What `hipo eval` evaluates, and with which engine: a base model, a LoRA adapter or a `hipo train` output.

``checkpoint=`` may be a `hipo train` output folder (``…/final``: an adapter, or a full model, with ``hipo.json``
naming its base model) or a Lightning ``.ckpt`` (its tensors are loaded onto ``model=`` built as in training).
Without ``checkpoint``, ``model=`` is evaluated as configured (``model.adapter_path`` applies an adapter).

``evaluate.engine=hf`` loads the model with transformers (HiPO's continuous-batching decode loop);
``evaluate.engine=vllm`` (GPU) hands the *same resolved* base model and adapter to vLLM and loads no transformers
weights at all (a second copy would take the GPU memory vLLM sizes its cache from). A Lightning ``.ckpt`` holds
tensors vLLM cannot read: it is refused by name, pointing at the ``final/`` folder of the same run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from hipo.app.builders import build_policy
from hipo.errors import ConfigError

ENGINES = ("hf", "vllm")


@dataclass
class EvalTarget:
    """The model to evaluate, resolved from ``model=`` and ``checkpoint=``.

    Attributes:
        model_cfg: the model config to build (base model, adapter) with LoRA creation turned off for outputs.
        lightning_checkpoint: a ``.ckpt`` whose policy tensors go onto the built model, or None.
        description: how runs and tables name it (tag ``hipo.model``).
    """

    model_cfg: DictConfig
    lightning_checkpoint: Path | None
    description: str


def resolve_eval_target(cfg: DictConfig) -> EvalTarget:
    """The base model, adapter or checkpoint ``cfg`` asks for (see the module docstring); nothing is loaded."""
    model_cfg = cfg.model.copy()
    checkpoint = cfg.get("checkpoint")
    if not checkpoint:
        return EvalTarget(model_cfg, None, str(model_cfg.name_or_path))
    path = Path(str(checkpoint)).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"checkpoint={checkpoint}: no such file or folder")
    if path.is_file():
        return EvalTarget(model_cfg, path, f"{model_cfg.name_or_path} + {checkpoint}")
    meta = json.loads((path / "hipo.json").read_text()) if (path / "hipo.json").exists() else {}
    if (path / "adapter_config.json").exists():
        model_cfg.name_or_path = meta.get("base_model", model_cfg.name_or_path)
        model_cfg.adapter_path = str(path)
        description = f"{model_cfg.name_or_path} + {path}"
    elif (path / "config.json").exists():
        model_cfg.name_or_path = str(path)
        model_cfg.adapter_path = None
        description = str(path)
    else:
        raise FileNotFoundError(f"checkpoint={checkpoint}: neither adapter_config.json nor config.json inside")
    model_cfg.lora.enabled = False
    return EvalTarget(model_cfg, None, description)


def load_for_eval(cfg: DictConfig) -> tuple[Any, Any, str]:
    """(transformers model in eval mode, tokenizer, description) of what ``cfg`` asks to evaluate."""
    target = resolve_eval_target(cfg)
    bundle = build_policy(target.model_cfg, with_reference=False)  # evaluation needs no reference (no frozen copy)
    model = bundle.policy
    if target.lightning_checkpoint is not None:
        _load_lightning_checkpoint(model, target.lightning_checkpoint)
    model.eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    return model, bundle.tokenizer, target.description


def load_engine(cfg: DictConfig) -> tuple[Any, Any, str]:
    """(generator, tokenizer, description): the transformers model (``hf``) or a vLLM engine (``vllm``)."""
    engine = str(cfg.evaluate.engine)
    if engine not in ENGINES:
        raise ConfigError(f"evaluate.engine={engine}: must be one of {', '.join(ENGINES)}")
    if engine == "hf":
        return load_for_eval(cfg)
    target = resolve_eval_target(cfg)
    if target.lightning_checkpoint is not None:
        raise ConfigError(
            f"checkpoint={target.lightning_checkpoint}: evaluate.engine=vllm reads model folders, not Lightning "
            "checkpoints; pass the run's final/ folder (checkpoint=<output_dir>/final), or use evaluate.engine=hf"
        )
    from hipo.eval.vllm_engine import VLLMGenerator
    from hipo.models.loading import load_tokenizer, resolve_model_source

    model_cfg = target.model_cfg
    source, _ = resolve_model_source(str(model_cfg.name_or_path))
    tokenizer = load_tokenizer(
        str(model_cfg.name_or_path), revision=model_cfg.revision, trust_remote_code=model_cfg.trust_remote_code
    )
    generator = VLLMGenerator(source, adapter_path=model_cfg.adapter_path, dtype=str(model_cfg.dtype))
    return generator, tokenizer, target.description


def _load_lightning_checkpoint(model: torch.nn.Module, path: Path) -> None:
    """Loads the ``policy.*`` tensors of a PreferenceModule checkpoint (full, or trainable-only for LoRA)."""
    state = torch.load(path, map_location="cpu", weights_only=False)["state_dict"]
    policy_state = {k[len("policy.") :]: v for k, v in state.items() if k.startswith("policy.")}
    if not policy_state:
        raise ValueError(f"checkpoint={path}: no policy tensors in it (is it a `hipo train` checkpoint?)")
    result = model.load_state_dict(policy_state, strict=False)
    if result.unexpected_keys:
        raise ValueError(
            f"checkpoint={path}: {len(result.unexpected_keys)} tensors do not fit model={model.__class__.__name__} "
            f"(e.g. {result.unexpected_keys[0]}); build the same model (and LoRA settings) as in training"
        )
