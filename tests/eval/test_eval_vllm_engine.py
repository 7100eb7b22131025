"""`evaluate.engine=vllm` composed end to end on a CPU, with a stand-in `vllm` package that records its calls.

The GPU run itself needs vLLM; what is checked here is what HiPO hands it: the model and adapter resolved from
``checkpoint=`` (not the config's base model), greedy sampling settings, token-id prompts, and that no transformers
weights are loaded next to it. Refusals: a Lightning ``.ckpt`` (vLLM reads folders) and the end-of-training
evaluation (it generates with the policy in memory).
"""

from __future__ import annotations

import importlib.machinery
import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest
from mlflow.tracking import MlflowClient

from hipo.app.eval_command import evaluate_command
from hipo.app.validate import validate_run_config
from hipo.config.compose import compose_config
from hipo.errors import ConfigError


class _Calls:
    def __init__(self) -> None:
        self.engine: dict[str, Any] = {}
        self.sampling: list[dict[str, Any]] = []
        self.prompts: list[Any] = []
        self.lora: list[tuple[Any, ...]] = []


def _module(name: str, **attributes: Any) -> types.ModuleType:
    module = types.ModuleType(name)
    module.__spec__ = importlib.machinery.ModuleSpec(name, None)
    module.__dict__.update(attributes)
    return module


@pytest.fixture
def fake_vllm(monkeypatch: pytest.MonkeyPatch, smollm2_tokenizer: Any) -> _Calls:
    """Installs a `vllm` stand-in: LLM(...) records its arguments, generate() answers ``\\boxed{4}``."""
    calls = _Calls()

    class LLM:
        def __init__(self, **kwargs: Any) -> None:
            calls.engine = kwargs

        def get_tokenizer(self) -> Any:
            return smollm2_tokenizer

        def generate(self, prompts: list[Any], params: Any, use_tqdm: bool, lora_request: Any) -> list[Any]:
            calls.prompts.extend(prompts)
            sample = types.SimpleNamespace(text="So the answer is \\boxed{4}.", token_ids=[1, 2, 3])
            return [types.SimpleNamespace(outputs=[sample] * params.n) for _ in prompts]

    class SamplingParams:
        def __init__(self, **kwargs: Any) -> None:
            calls.sampling.append(kwargs)
            self.n = kwargs["n"]

    def lora_request(*args: Any) -> tuple[Any, ...]:
        calls.lora.append(args)
        return args

    monkeypatch.setitem(sys.modules, "vllm", _module("vllm", LLM=LLM, SamplingParams=SamplingParams))
    monkeypatch.setitem(sys.modules, "vllm.lora", _module("vllm.lora"))
    monkeypatch.setitem(sys.modules, "vllm.lora.request", _module("vllm.lora.request", LoRARequest=lora_request))
    return calls


@pytest.fixture
def no_transformers_weights(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the vLLM engine must not load transformers weights")

    monkeypatch.setattr("hipo.app.eval_model.build_policy", refuse)


def _adapter_output(tmp_path: Path) -> Path:
    """A `hipo train` final/ folder holding an adapter (only the files HiPO reads before vLLM loads it)."""
    final = tmp_path / "run" / "final"
    final.mkdir(parents=True)
    (final / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (final / "hipo.json").write_text(json.dumps({"base_model": "tiny"}))
    return final


@pytest.mark.slow  # `hipo eval` with a fake vLLM: a composition and a run logged to MLflow
def test_vllm_engine_evaluates_the_checkpoint_adapter_without_loading_transformers_weights(
    tmp_path: Path, mlflow_uri: str, fake_vllm: _Calls, no_transformers_weights: None
) -> None:
    final = _adapter_output(tmp_path)
    cfg = compose_config(
        [
            "model=smollm2-135m",  # the config's model is not what is evaluated: the checkpoint's base is
            f"checkpoint={final}",
            "evaluate.engine=vllm",
            "benchmark=[synthetic]",
            "limit=3",
            "evaluate.generation.max_new_tokens=64",
            f"logger.tracking_uri={mlflow_uri}",
            f"logger.artifact_location={tmp_path / 'mlruns'}",
            f"output_dir={tmp_path / 'eval'}",
        ],
        config_name="eval",
    )
    result = evaluate_command(cfg)
    assert fake_vllm.engine["model"] == "tiny" and fake_vllm.engine["enable_lora"] is True
    assert [request[2] for request in fake_vllm.lora] == [str(final)]
    assert fake_vllm.sampling == [{"n": 1, "temperature": 0.0, "top_p": 1.0, "max_tokens": 64, "seed": None}]
    assert len(fake_vllm.prompts) == 3 and all(isinstance(p["prompt_token_ids"][0], int) for p in fake_vllm.prompts)
    run = MlflowClient(mlflow_uri).get_run(result["run_id"])
    assert run.info.status == "FINISHED" and str(final) in run.data.tags["hipo.model"]
    assert run.data.metrics["eval/synthetic/num_items"] == 3 and run.data.metrics["eval/synthetic/no_answer"] == 0


@pytest.mark.slow  # composes the eval config
def test_vllm_engine_refuses_a_lightning_checkpoint_by_name(tmp_path: Path, fake_vllm: _Calls) -> None:
    ckpt = tmp_path / "last.ckpt"
    ckpt.write_bytes(b"not read")
    cfg = compose_config(["model=tiny", f"checkpoint={ckpt}", "evaluate.engine=vllm"], config_name="eval")
    from hipo.app.eval_model import load_engine

    with pytest.raises(ConfigError, match="final/"):
        load_engine(cfg)
    assert fake_vllm.engine == {}


@pytest.mark.slow  # composes the training config
def test_training_refuses_end_of_training_evaluation_with_vllm() -> None:
    cfg = compose_config(["model=tiny", "evaluate.enabled=true", "evaluate.engine=vllm"])
    with pytest.raises(ConfigError, match="hipo eval checkpoint=<output_dir>/final evaluate.engine=vllm"):
        validate_run_config(cfg, None)
