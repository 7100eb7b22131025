"""Generation with the tiny model: batching equals one-by-one greedy decoding, order, sampling, LoRA, throughput."""

from __future__ import annotations

import copy

import pytest
import torch

from hipo.eval.generation import GenerationConfig, HFGenerator, generate_completions
from hipo.eval.prompts import DEFAULT_PROMPT_TEMPLATE, fill_template, render_prompt
from hipo.models.tiny import build_tiny_model

QUESTIONS = [
    "What is 2+2?",
    "A much longer question: Janet has 16 eggs, eats three and bakes with four. How many are left to sell?",
    "Q3",
    "Compute 17*23 and explain.",
    "If x + 3 = 10, what is x?",
]


@pytest.fixture(scope="module")
def prompts(smollm2_tokenizer) -> list[str]:
    return [render_prompt(smollm2_tokenizer, q) for q in QUESTIONS]


def one_by_one(model: torch.nn.Module, tokenizer, prompts: list[str], max_new_tokens: int) -> list[str]:
    """Independent reference: unpadded greedy ``generate`` per prompt, decoded the same way."""
    texts = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=2)
        texts.append(tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True))
    return texts


def test_render_prompt_uses_the_chat_template(smollm2_tokenizer) -> None:
    prompt = render_prompt(smollm2_tokenizer, "What is 2+2?")
    assert prompt.startswith("<|im_start|>") and prompt.endswith("<|im_start|>assistant\n")
    assert fill_template(DEFAULT_PROMPT_TEMPLATE, "What is 2+2?") in prompt
    assert "\\boxed{}" in prompt  # template braces survive (no str.format)
    with_system = render_prompt(smollm2_tokenizer, "q", system="Be brief.")
    assert "<|im_start|>system\nBe brief.<|im_end|>" in with_system
    with pytest.raises(ValueError, match="exactly once"):
        fill_template("no placeholder", "q")


@pytest.mark.slow  # generates prompt by prompt as the reference
def test_batched_greedy_equals_one_by_one_and_keeps_order(model, smollm2_tokenizer, prompts) -> None:
    config = GenerationConfig(max_new_tokens=10, batch_size=3, progress=False)
    output = generate_completions(model, smollm2_tokenizer, prompts, config)
    expected = one_by_one(model, smollm2_tokenizer, prompts, 10)
    assert [c[0] for c in output.completions] == expected
    assert len(set(expected)) == len(expected)  # outputs differ per prompt, so a mix-up of the order would show
    assert output.new_tokens == sum(c[0] for c in output.token_counts) > 0
    assert all(0 < c[0] <= 10 for c in output.token_counts)


def test_modes_are_restored(model, smollm2_tokenizer, prompts) -> None:
    model.train()
    smollm2_tokenizer.padding_side = "right"
    try:
        generate_completions(model, smollm2_tokenizer, prompts[:2], GenerationConfig(max_new_tokens=2, progress=False))
        assert model.training and smollm2_tokenizer.padding_side == "right"
    finally:
        model.eval()


@pytest.mark.slow  # three sampled generations
def test_sampling_n_per_prompt_is_seeded(model, smollm2_tokenizer, prompts) -> None:
    config = GenerationConfig(
        max_new_tokens=6, do_sample=True, n=3, temperature=1.0, top_p=0.95, seed=7, progress=False
    )
    first = generate_completions(model, smollm2_tokenizer, prompts[:2], config)
    again = generate_completions(model, smollm2_tokenizer, prompts[:2], config)
    assert [len(c) for c in first.completions] == [3, 3]
    assert first.completions == again.completions
    assert len(set(first.completions[0])) > 1  # samples differ from each other
    other = generate_completions(
        model, smollm2_tokenizer, prompts[:2], GenerationConfig(**{**config.__dict__, "seed": 8})
    )
    assert other.completions != first.completions


@pytest.mark.slow  # generates with the adapter, merged and without
def test_lora_adapter_is_applied(model, smollm2_tokenizer, prompts) -> None:
    """A PeftModel generates like its merged weights (and unlike the base model)."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules=["q_proj", "v_proj", "o_proj"]))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5, generator=generator)
    config = GenerationConfig(max_new_tokens=8, batch_size=4, progress=False)
    adapted = HFGenerator(peft_model, smollm2_tokenizer).generate_texts(prompts, config).completions
    merged = copy.deepcopy(peft_model).merge_and_unload()
    assert adapted == [[text] for text in one_by_one(merged, smollm2_tokenizer, prompts, 8)]
    assert adapted != generate_completions(model, smollm2_tokenizer, prompts, config).completions


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="needs do_sample"):
        GenerationConfig(n=4)
    with pytest.raises(ValueError, match="temperature"):
        GenerationConfig(do_sample=True, temperature=0.0)
    with pytest.raises(ValueError, match="max_new_tokens"):
        GenerationConfig(max_new_tokens=0)
    with pytest.raises(ValueError, match="exactly once"):
        GenerationConfig(prompt_template="Solve this.")


@pytest.mark.slow  # a timing comparison over 16 prompts
def test_batched_generation_is_faster_per_token(smollm2_tokenizer) -> None:
    """Batch 8 vs batch 1 on 16 prompts x 24 tokens: tokens/s ratio well above 1 (overhead amortized)."""
    tiny = build_tiny_model(seed=0)
    prompts = [render_prompt(smollm2_tokenizer, f"Question number {i}: what is {i} + {i}?") for i in range(16)]
    generate_completions(tiny, smollm2_tokenizer, prompts[:2], GenerationConfig(max_new_tokens=2, progress=False))
    runs: dict[int, list] = {8: [], 1: []}
    for _ in range(2):  # interleaved, best of two each: a busy machine slows one run, not the comparison
        for batch_size, outputs in runs.items():
            config = GenerationConfig(max_new_tokens=24, batch_size=batch_size, progress=False)
            outputs.append(generate_completions(tiny, smollm2_tokenizer, prompts, config))
    batched = max(runs[8], key=lambda output: output.tokens_per_second)
    single = max(runs[1], key=lambda output: output.tokens_per_second)
    assert batched.new_tokens == single.new_tokens == 16 * 24
    ratio = batched.tokens_per_second / single.tokens_per_second
    print(
        f"batched {batched.tokens_per_second:.0f} tok/s, single {single.tokens_per_second:.0f} tok/s, ratio {ratio:.2f}"
    )
    assert ratio > 1.5


def test_vllm_engine_is_optional() -> None:
    """Without vllm installed (CPU machines) the engine reports it and refuses to start with a clear error."""
    from hipo.eval.vllm_engine import VLLMGenerator, vllm_available

    if vllm_available():
        pytest.skip("vllm is installed here; the engine itself needs a GPU run")
    with pytest.raises(ImportError, match="needs the vllm package"):
        VLLMGenerator("some/model")
