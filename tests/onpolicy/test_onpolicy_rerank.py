"""Implicit rewards as a verifier: the scores, best-of-K, and rewards equal to a full-logits computation."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from hipo.data.segmenters.tags import TagsSegmenter
from hipo.data.tokenize import PreferenceTokenizer
from hipo.models.lora import apply_lora
from hipo.models.tiny import build_tiny_model
from hipo.onpolicy.rerank import ResponseRewards, best_of_k, implicit_rewards, response_logps, segmented_responses


def test_min_segment_ignores_absent_segments_and_falls_back_to_whole() -> None:
    rewards = ResponseRewards(
        rewards=torch.tensor([[0.5, -0.2, 0.1, 0.4], [9.0, 9.0, 9.0, -1.0], [0.3, 0.0, -0.7, 0.0]]),
        counts=torch.tensor([[2, 3, 1, 7], [0, 0, 0, 5], [1, 0, 2, 4]]),
    )
    assert rewards.score("whole").tolist() == pytest.approx([0.4, -1.0, 0.0])
    assert rewards.score("min_segment").tolist() == pytest.approx([-0.2, -1.0, -0.7])  # row 2: the empty Mt is skipped
    with pytest.raises(ValueError):
        rewards.score("max")


def test_best_of_k_keeps_the_highest_scoring_sample() -> None:
    scores = torch.tensor([[0.1, 0.9, 0.3], [2.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    correct = torch.tensor([[False, True, False], [False, True, True], [True, True, False]])
    assert best_of_k(scores, correct) == pytest.approx(1 / 3)


@pytest.mark.slow  # the tiny model with a random adapter, two forward passes as the independent computation
def test_rewards_equal_beta_times_the_log_ratio_from_full_logits(smollm2_tokenizer) -> None:
    torch.manual_seed(0)
    policy = apply_lora(build_tiny_model().double(), r=4, alpha=8, dropout=0.0)
    with torch.no_grad():
        for name, parameter in policy.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0.0, 0.5)
    segmenter = TagsSegmenter(prompt_field="prompt")
    texts = ["<Rq>Find x.</Rq>\n<Mt>Step 1: 2 + 2 = 4.</Mt>\n<Ra>The answer is 4.</Ra>", "x is 5, I think."]
    prompts = ["What is 2 + 2?", "What is 2 + 3?"]
    tokenizer = PreferenceTokenizer(smollm2_tokenizer)
    pairs = segmented_responses(segmenter, prompts, texts)
    assert [s.name for s in pairs[0].chosen.spans] == ["Rq", "Mt", "Ra"] and pairs[1].chosen.spans == ()
    mine_logps = response_logps(policy, tokenizer, pairs)
    with policy.disable_adapter():  # the reference: the base model
        base_logps = response_logps(policy, tokenizer, pairs)
    out = implicit_rewards(mine_logps, base_logps, beta=0.3)
    assert out.counts[1, :3].tolist() == [0, 0, 0] and int(out.counts[1, 3]) > 0

    def logp(model, ids, start: int) -> float:  # noqa: ANN001
        logits = model(**ids).logits[0, :-1]
        chosen = F.log_softmax(logits.double(), -1).gather(-1, ids["input_ids"][0, 1:, None]).squeeze(-1)
        return float(chosen[start - 1 :].sum())

    for row, (prompt, text) in enumerate(zip(prompts, texts, strict=True)):
        rendered = tokenizer.render_prompt(prompt)
        ids = smollm2_tokenizer(rendered + text + "<|im_end|>", add_special_tokens=False, return_tensors="pt")
        start = len(smollm2_tokenizer(rendered, add_special_tokens=False)["input_ids"])
        with torch.no_grad():
            mine = logp(policy.eval(), ids, start)
            with policy.disable_adapter():
                theirs = logp(policy, ids, start)
        assert float(out.rewards[row, -1]) == pytest.approx(0.3 * (mine - theirs), abs=1e-8)
