"""The continuous-batching decode loop against Hugging Face ``generate`` (an independent computation).

Sequences are made to end at chosen, different steps by declaring, per prompt, the token its unconstrained greedy
output has at that step a stop token (``model.generation_config.eos_token_id``, read by both ``generate`` and HiPO).
"""

from __future__ import annotations

import copy
import time

import pytest
import torch

from hipo.eval.decode import DecodeSettings, choose_tokens, decode
from hipo.eval.generation import GenerationConfig, concurrent_sequences, generate_completions
from hipo.eval.prompts import render_prompt

EOS = 2  # <|im_end|>, the tokenizer's eos and pad


def questions(count: int) -> list[str]:
    """Questions of very different lengths (a few tokens to a few hundred)."""
    return [f"Q{i}: " + "many words here " * ((i * 37) % 90) + f"what is {i}+{i}?" for i in range(count)]


def reference_ids(model, tokenizer, prompts: list[str], max_new_tokens: int) -> list[list[int]]:
    """Greedy ``model.generate`` one prompt at a time (no padding), cut after its first stop token."""
    stops = model.generation_config.eos_token_id
    stops = set(stops if isinstance(stops, list) else [stops])
    rows = []
    for prompt in prompts:
        ids = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        with torch.no_grad():
            out = model.generate(**ids, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=EOS)
        new = out[0, ids["input_ids"].shape[1] :].tolist()
        rows.append(new[: next((p + 1 for p, t in enumerate(new) if t in stops), len(new))])
    return rows


def with_end_steps(model, tokenizer, prompts: list[str], ends: list[int | None], max_new_tokens: int):
    """A copy of ``model`` whose stop tokens make prompt i end at step ``ends[i]`` (None: run to the cap)."""
    free = reference_ids(model, tokenizer, prompts, max_new_tokens)
    stops = {EOS}
    for row, end in zip(free, ends, strict=True):
        if end is not None and row[end - 1] not in row[: end - 1]:
            stops.add(row[end - 1])
    stopped = copy.deepcopy(model)
    stopped.generation_config.eos_token_id = sorted(stops)
    return stopped


@pytest.fixture(scope="module")
def ended(model, smollm2_tokenizer):
    """(model with stop tokens, 9 raw prompts of 6-250 tokens, their reference ids at 20 new tokens)."""
    prompts = questions(9)
    stopped = with_end_steps(model, smollm2_tokenizer, prompts, [3, None, 1, 12, 7, None, 2, 16, 5], 20)
    return stopped, prompts, reference_ids(stopped, smollm2_tokenizer, prompts, 20)


@pytest.mark.slow  # HF generate as the reference, per batch width
@pytest.mark.parametrize("batch_size", [1, 2, 4, 16])
def test_greedy_equals_generate_for_every_batch_width(ended, smollm2_tokenizer, batch_size) -> None:
    """Token-identical to unpadded greedy ``generate``: refills (2, 4 slots for 9 prompts) and one full batch (16)."""
    stopped, prompts, expected = ended
    lengths = [len(ids) for ids in smollm2_tokenizer(prompts, add_special_tokens=False)["input_ids"]]
    assert max(lengths) > 20 * min(lengths), lengths  # very different prompt lengths
    assert len({len(row) for row in expected}) >= 5 and min(map(len, expected)) < 20  # different end steps
    config = GenerationConfig(max_new_tokens=20, batch_size=batch_size, progress=False)
    output = generate_completions(stopped, smollm2_tokenizer, prompts, config)
    assert output.token_counts == [[len(row)] for row in expected]
    assert output.completions == [[smollm2_tokenizer.decode(row, skip_special_tokens=True)] for row in expected]
    assert output.new_tokens == sum(map(len, expected))


@pytest.mark.slow  # HF generate as the reference
def test_sequences_stop_at_their_first_stop_token(ended, smollm2_tokenizer) -> None:
    """The loop's raw ids end at the first stop token (included, counted) or at the cap; no token follows a stop."""
    stopped, prompts, expected = ended
    stops = frozenset(stopped.generation_config.eos_token_id)
    prompt_ids = smollm2_tokenizer(prompts, add_special_tokens=False)["input_ids"]
    finished: list[tuple[int, int]] = []
    settings = DecodeSettings(max_new_tokens=20, slots=3, stop_ids=stops)
    with torch.inference_mode():
        ids = decode(stopped, prompt_ids, list(range(len(prompts))), settings, lambda p, s, t: finished.append((p, s)))
    assert [row[0] for row in ids] == expected
    for (row,) in ids:
        assert all(token not in stops for token in row[:-1])
        assert row[-1] in stops or len(row) == 20
    assert sorted(finished) == [(i, 0) for i in range(len(prompts))]
    assert finished != sorted(finished)  # sequences are reported as they finish, not in batch order


@pytest.mark.slow  # sampling many sequences
def test_sampling_n_shapes_and_top_p_limit(ended, smollm2_tokenizer) -> None:
    """n samples per prompt in prompt order; a vanishing top_p leaves only the argmax, i.e. greedy."""
    stopped, prompts, expected = ended
    config = GenerationConfig(max_new_tokens=20, batch_size=2, do_sample=True, n=3, seed=3, progress=False)
    output = generate_completions(stopped, smollm2_tokenizer, prompts, config)
    assert [len(c) for c in output.completions] == [3] * len(prompts)
    assert [len(c) for c in output.token_counts] == [3] * len(prompts)
    assert all(0 < count <= 20 for counts in output.token_counts for count in counts)
    assert output.new_tokens == sum(map(sum, output.token_counts))
    assert any(len(set(samples)) > 1 for samples in output.completions)
    nucleus = GenerationConfig(**{**config.__dict__, "top_p": 1e-6, "temperature": 0.7})
    narrow = generate_completions(stopped, smollm2_tokenizer, prompts, nucleus)
    greedy = [smollm2_tokenizer.decode(row, skip_special_tokens=True) for row in expected]
    assert narrow.completions == [[text] * 3 for text in greedy]


def test_k_samples_share_one_prefill_with_the_logits_of_k_independent_prefills(model, smollm2_tokenizer) -> None:
    """n = K samples of a prompt prefill it once ([1, L] tokens) and repeat its cache K times; the same prompt given K
    times with n = 1 is prefilled K times ([K, L]). Every step's logits agree row for row, so do the samples."""
    k, prompt = 4, smollm2_tokenizer(questions(3)[2], add_special_tokens=False)["input_ids"]
    fp64 = copy.deepcopy(model).double()
    seen: list[tuple[tuple[int, ...], torch.Tensor]] = []
    hook = fp64.register_forward_hook(
        lambda _, args, kwargs, out: seen.append((tuple(kwargs["input_ids"].shape), out.logits[:, -1].clone())),
        with_kwargs=True,
    )
    common = {
        "max_new_tokens": 12,
        "slots": k,
        "stop_ids": frozenset({EOS}),
        "do_sample": True,
        "seed": 5,
        "pad_id": EOS,
    }
    try:
        with torch.no_grad():
            shared = decode(fp64, [prompt], [0], DecodeSettings(n=k, **common))
            shared_calls, seen[:] = list(seen), []
            independent = decode(fp64, [prompt] * k, list(range(k)), DecodeSettings(n=1, **common))
    finally:
        hook.remove()
    assert shared_calls[0][0] == (1, len(prompt)) and seen[0][0] == (k, len(prompt))  # one prefill row against K
    assert len(shared_calls) == len(seen)
    torch.testing.assert_close(shared_calls[0][1].expand(k, -1), seen[0][1], rtol=0, atol=1e-9)
    for (shape, ours), (other_shape, theirs) in zip(shared_calls[1:], seen[1:], strict=True):
        assert shape == other_shape
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-9)
    assert shared[0] == [row[0] for row in independent] and len(set(map(tuple, shared[0]))) > 1


def test_choose_tokens_samples_the_nucleus_with_the_tempered_probabilities() -> None:
    """logits log(0.5, 0.3, 0.15, 0.05): top_p=0.7 keeps {0, 1} renormalized (0.625, 0.375); T=2 flattens."""
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log().expand(20000, 4)
    generator = torch.Generator().manual_seed(0)
    settings = DecodeSettings(max_new_tokens=1, slots=1, stop_ids=frozenset(), do_sample=True, top_p=0.7)
    counts = torch.bincount(choose_tokens(logits, settings, generator), minlength=4) / 20000
    assert counts[2:].sum() == 0 and abs(counts[0] - 0.625) < 0.015
    hot = DecodeSettings(max_new_tokens=1, slots=1, stop_ids=frozenset(), do_sample=True, temperature=2.0)
    counts = torch.bincount(choose_tokens(logits, hot, generator), minlength=4) / 20000
    expected = torch.tensor([0.5, 0.3, 0.15, 0.05]).sqrt() / torch.tensor([0.5, 0.3, 0.15, 0.05]).sqrt().sum()
    assert torch.allclose(counts, expected, atol=0.015)


def test_batch_size_comes_from_the_memory_budget(model) -> None:
    """Tiny model: K+V per token = 2 x 2 layers x 4 heads x 16 dims x 4 bytes = 1024 B (+ 64 spare columns);
    logits 8 x 49152 B."""
    per_sequence = 1024 * (60 + 40 + 64) + 8 * 49152
    config = GenerationConfig(max_new_tokens=40, memory_gib=10.5 * per_sequence / 2**30, progress=False)
    assert concurrent_sequences(model, [12, 60, 30], config) == 10
    assert concurrent_sequences(model, [12, 60, 30], GenerationConfig(**{**config.__dict__, "max_batch_size": 4})) == 4
    explicit = GenerationConfig(max_new_tokens=40, batch_size=3, n=2, do_sample=True, memory_gib=1e-9)
    assert concurrent_sequences(model, [12], explicit) == 6
    with pytest.raises(ValueError, match="memory_gib"):
        GenerationConfig(memory_gib=0)


@pytest.mark.slow  # decodes with the progress bar
def test_progress_bar_counts_sequences_with_tokens_per_second(ended, smollm2_tokenizer, monkeypatch) -> None:
    """One bar update per finished sequence (total = prompts x n) and a tok_s postfix."""
    import hipo.eval.generation as generation

    calls: list[tuple[str, object]] = []

    class FakeBar:
        def __init__(self, total: int, **kwargs) -> None:
            calls.append(("total", total))

        def update(self, count: int) -> None:
            calls.append(("update", count))

        def set_postfix(self, **kwargs) -> None:
            calls.append(("postfix", kwargs))

        def close(self) -> None:
            calls.append(("close", None))

    monkeypatch.setattr(generation, "tqdm", FakeBar)
    stopped, prompts, _ = ended
    config = GenerationConfig(max_new_tokens=20, batch_size=2, do_sample=True, n=2, progress=True)
    generate_completions(stopped, smollm2_tokenizer, prompts, config)
    assert calls[0] == ("total", 2 * len(prompts)) and calls[-1] == ("close", None)
    assert [value for kind, value in calls if kind == "update"] == [1] * (2 * len(prompts))
    assert all("tok_s" in value for kind, value in calls if kind == "postfix")


@pytest.mark.slow  # HF generate on the merged model as the reference
def test_lora_model_with_refills_equals_merged_generate(model, smollm2_tokenizer) -> None:
    """A PeftModel (train mode restored) decodes like ``generate`` of its merged weights, with 2 slots for 5 prompts."""
    from peft import LoraConfig, get_peft_model

    peft_model = get_peft_model(copy.deepcopy(model), LoraConfig(r=4, target_modules=["q_proj", "v_proj"]))
    generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for name, parameter in peft_model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5, generator=generator)
    prompts = [render_prompt(smollm2_tokenizer, q) for q in questions(5)]
    peft_model.train()
    output = generate_completions(
        peft_model, smollm2_tokenizer, prompts, GenerationConfig(max_new_tokens=8, batch_size=2, progress=False)
    )
    assert peft_model.training
    merged = copy.deepcopy(peft_model).merge_and_unload().eval()
    expected = reference_ids(merged, smollm2_tokenizer, prompts, 8)
    assert output.completions == [[smollm2_tokenizer.decode(row, skip_special_tokens=True)] for row in expected]


def plain_generate_tokens_per_second(model, tokenizer, prompts: list[str], max_new_tokens: int) -> float:
    """Useful tokens/s of greedy HF ``generate`` in length-sorted batches of 8 (the previous implementation)."""
    stops = set(model.generation_config.eos_token_id)
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    order = sorted(prompts, key=lambda p: -len(tokenizer(p, add_special_tokens=False)["input_ids"]))
    useful, started = 0, time.perf_counter()
    for start in range(0, len(order), 8):
        encoded = tokenizer(order[start : start + 8], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            out = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=EOS)
        for row in out[:, encoded["input_ids"].shape[1] :].tolist():
            useful += next((p + 1 for p, t in enumerate(row) if t in stops), len(row))
    tokenizer.padding_side = side
    return useful / (time.perf_counter() - started)


@pytest.mark.slow
def test_not_slower_than_plain_generate_when_lengths_differ(model, smollm2_tokenizer) -> None:
    """32 prompts, half end within 4 tokens, half run 48: the decode loop (8 slots) vs generate (batch 8), interleaved.

    Generate keeps every batch running until its longest row ends; the loop refills freed slots.
    """
    prompts = [render_prompt(smollm2_tokenizer, f"Question {i}: what is {i} + {2 * i}?") for i in range(32)]
    stopped = with_end_steps(model, smollm2_tokenizer, prompts, [None if i % 2 else 1 + i % 4 for i in range(32)], 48)
    config = GenerationConfig(max_new_tokens=48, batch_size=8, progress=False)
    generate_completions(stopped, smollm2_tokenizer, prompts[:2], config)  # warm-up
    ours, plain = [], []
    for _ in range(3):
        ours.append(generate_completions(stopped, smollm2_tokenizer, prompts, config).tokens_per_second)
        plain.append(plain_generate_tokens_per_second(stopped, smollm2_tokenizer, prompts, 48))
    ratio = sorted(ours)[1] / sorted(plain)[1]
    print(f"decode loop {sorted(ours)[1]:.0f} tok/s, plain generate {sorted(plain)[1]:.0f} tok/s, ratio {ratio:.2f}")
    assert ratio > 0.9


REAL_QUESTIONS = [
    "Answer with one word: is 7 a prime number?",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. How many clips "
    "did Natalia sell altogether in April and May?",
    "What is 2+2?",
    "Convert the point $(0,3)$ in rectangular coordinates to polar coordinates. Enter your answer in the form "
    "$(r,\\theta),$ where $r > 0$ and $0 \\le \\theta < 2 \\pi.$ " + "Show every step of your reasoning. " * 12,
    "Say hello.",
]


@pytest.mark.slow
def test_real_model_greedy_equals_generate() -> None:
    """SmolLM2-135M-Instruct, real prompts (~20-200 tokens), 3 slots for 5 prompts: ids equal unpadded ``generate``."""
    from hipo.models.loading import load_model

    real, tokenizer = load_model("embedded:smollm2-135m", dtype="float32")
    real.eval()
    prompts = [render_prompt(tokenizer, q, template="{question}") for q in REAL_QUESTIONS]  # short replies
    expected = reference_ids(real, tokenizer, prompts, 32)
    print([len(row) for row in expected])
    assert min(map(len, expected)) < 32 and len({len(row) for row in expected}) >= 3  # ends at different steps
    output = generate_completions(real, tokenizer, prompts, GenerationConfig(max_new_tokens=32, batch_size=3))
    assert output.token_counts == [[len(row)] for row in expected]
    assert output.completions == [[tokenizer.decode(row, skip_special_tokens=True)] for row in expected]
