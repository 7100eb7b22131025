"""Optional vLLM generation (GPU): the same rendered prompts and ``GenerationConfig`` as the HF path.

Used only where ``import vllm`` succeeds. Prompts are passed as token ids (tokenized with
``add_special_tokens=False``) so that a chat template which already starts with a BOS token is not given a second
one by vLLM's own tokenization. A LoRA adapter directory is applied through vLLM's ``LoRARequest``. vLLM batches
continuously and sizes its KV cache from ``gpu_memory_utilization`` itself, so ``GenerationConfig.batch_size``,
``memory_gib`` and ``max_batch_size`` (settings of the Hugging Face decode loop) do not apply here; the decoding
settings (``max_new_tokens``, greedy or ``temperature``/``top_p`` sampling, ``n``, ``seed``) do.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Sequence
from typing import Any

from hipo.eval.generation import GenerationConfig, GenerationOutput


def vllm_available() -> bool:
    """Whether the ``vllm`` package can be imported."""
    return importlib.util.find_spec("vllm") is not None


class VLLMGenerator:
    """A ``TextGenerator`` backed by ``vllm.LLM``.

    Args:
        model_path: a local model folder or hub id (the base model when ``adapter_path`` is given).
        adapter_path: an optional PEFT LoRA adapter folder.
        max_lora_rank: the largest LoRA rank vLLM must reserve for.
        dtype: vLLM dtype (``"auto"``, ``"bfloat16"``, …).
        gpu_memory_utilization: the fraction of GPU memory vLLM may take.
        engine_kwargs: further ``vllm.LLM`` arguments (e.g. ``max_model_len``).
    """

    def __init__(
        self,
        model_path: str,
        adapter_path: str | None = None,
        max_lora_rank: int = 64,
        dtype: str = "auto",
        gpu_memory_utilization: float = 0.85,
        **engine_kwargs: Any,
    ) -> None:
        if not vllm_available():
            raise ImportError("VLLMGenerator needs the vllm package (GPU only); use the Hugging Face generator instead")
        from vllm import LLM

        self.adapter_path = adapter_path
        self.llm = LLM(
            model=model_path,
            dtype=dtype,
            gpu_memory_utilization=gpu_memory_utilization,
            enable_lora=adapter_path is not None,
            max_lora_rank=max_lora_rank,
            **engine_kwargs,
        )
        self.tokenizer = self.llm.get_tokenizer()

    def generate_texts(self, prompts: Sequence[str], config: GenerationConfig) -> GenerationOutput:
        """Completions for rendered prompt strings, ``config.n`` per prompt, in prompt order."""
        from vllm import SamplingParams

        params = SamplingParams(
            n=config.n,
            temperature=config.temperature if config.do_sample else 0.0,  # temperature 0 is greedy in vLLM
            top_p=config.top_p if config.do_sample else 1.0,
            max_tokens=config.max_new_tokens,
            seed=config.seed if config.do_sample else None,
        )
        token_prompts = [
            {"prompt_token_ids": self.tokenizer(prompt, add_special_tokens=False)["input_ids"]} for prompt in prompts
        ]
        lora = None
        if self.adapter_path is not None:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("adapter", 1, self.adapter_path)
        started = time.perf_counter()
        outputs = self.llm.generate(token_prompts, params, use_tqdm=config.progress, lora_request=lora)
        seconds = time.perf_counter() - started
        completions = [[sample.text for sample in output.outputs] for output in outputs]
        counts = [[len(sample.token_ids) for sample in output.outputs] for output in outputs]
        return GenerationOutput(
            completions=completions, new_tokens=sum(map(sum, counts)), seconds=seconds, token_counts=counts
        )
