"""load_model on local folders (the same from_pretrained path a hub id takes), the tiny model, errors, compile."""

from __future__ import annotations

import copy

import pytest
import torch

from hipo.models.embedded import ensure_converted
from hipo.models.loading import load_model, maybe_compile, prepare_tokenizer
from hipo.models.logprobs import decoder_and_head, sequence_segment_logps
from hipo.models.tiny import build_tiny_model
from tests.helpers.model_batches import padded_batch


@pytest.fixture(scope="module")
def saved_tiny(tmp_path_factory, smollm2_tokenizer):
    """A tiny model and the SmolLM2 tokenizer written by save_pretrained: a local folder in hub layout."""
    folder = tmp_path_factory.mktemp("tiny-model")
    build_tiny_model(seed=7).save_pretrained(folder)
    smollm2_tokenizer.save_pretrained(folder)
    return folder


@pytest.mark.slow  # saves and reloads the tiny model
def test_local_folder_loads_the_same_weights(saved_tiny):
    model, tokenizer = load_model(str(saved_tiny))
    reference = build_tiny_model(seed=7)
    state = reference.state_dict()
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, state[name]), name
    assert model.config._attn_implementation == "sdpa"
    assert tokenizer.pad_token == "<|im_end|>" and tokenizer.padding_side == "right"
    assert model.config.pad_token_id == tokenizer.pad_token_id
    ids = tokenizer("2 + 3 = 5", return_tensors="pt").input_ids
    with torch.no_grad():
        torch.testing.assert_close(model(ids).logits, reference(ids).logits)


@pytest.mark.slow  # reloads the saved tiny model
def test_local_folder_dtype_attention_and_checkpointing(saved_tiny):
    model, _ = load_model(str(saved_tiny), dtype="bf16", attn_implementation="eager", gradient_checkpointing=True)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert model.config._attn_implementation == "eager"
    assert model.is_activation_checkpointing and model.config.use_cache is False


def test_tiny_source():
    model, tokenizer = load_model("tiny", dtype="float32", attn_implementation="eager", tiny={"num_layers": 1})
    assert len(model.model.layers) == 1
    assert model.config._attn_implementation == "eager"
    assert tokenizer.chat_template and tokenizer.pad_token is not None
    with pytest.raises(ValueError, match="'tiny' options"):
        load_model(str(ensure_converted()), tiny={"num_layers": 1})


def test_missing_sources_give_clear_errors(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no such model folder: .*nope/model"):
        load_model(str(tmp_path / "nope" / "model"))
    with pytest.raises(FileNotFoundError, match="no such model folder"):
        load_model("./relative/missing")
    with pytest.raises(FileNotFoundError, match="has no config.json"):
        load_model(str(tmp_path))
    (tmp_path / "weights.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="is a file"):
        load_model(str(tmp_path / "weights.bin"))
    with pytest.raises(ValueError, match="unknown embedded model 'gpt-9'"):
        load_model("embedded:gpt-9")
    with pytest.raises(ValueError, match="unknown dtype 'float8'"):
        load_model("tiny", dtype="float8")
    # A hub id goes to from_pretrained; offline (no retries against the unreachable hub) it fails with its name.
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(OSError, match="could not fetch 'hipo-test/no-such-model' at revision 'v2' from the Hugging"):
        load_model("hipo-test/no-such-model", revision="v2")


@pytest.mark.slow  # deep copies of the real tokenizer
def test_prepare_tokenizer_falls_back_to_eos(smollm2_tokenizer):
    tokenizer = copy.deepcopy(smollm2_tokenizer)
    tokenizer.pad_token = None
    tokenizer.padding_side = "left"
    prepare_tokenizer(tokenizer)
    assert tokenizer.pad_token == tokenizer.eos_token and tokenizer.padding_side == "right"
    tokenizer.pad_token, tokenizer.eos_token = None, None
    with pytest.raises(ValueError, match="neither a pad nor an eos"):
        prepare_tokenizer(tokenizer)
    with pytest.raises(ValueError, match="embedding table only 1000 rows"):
        prepare_tokenizer(copy.deepcopy(smollm2_tokenizer), build_tiny_model(vocab_size=1000))


@pytest.mark.slow  # torch.compile
def test_maybe_compile_keeps_values_and_parameter_names():
    model = build_tiny_model(seed=0)
    names = [n for n, _ in model.named_parameters()]
    batch = padded_batch([([5, 6, 7], [8, 9, 10], [0, 1, 2])], 3)
    with torch.no_grad():
        expected = sequence_segment_logps(model, batch).sums
    assert maybe_compile(model, enabled=False) is model and decoder_and_head(model)[0]._compiled_call_impl is None
    maybe_compile(model, enabled=True, backend="eager")  # the eager backend: no C++ toolchain needed on CPU
    assert decoder_and_head(model)[0]._compiled_call_impl is not None
    assert [n for n, _ in model.named_parameters()] == names
    with torch.no_grad():
        torch.testing.assert_close(sequence_segment_logps(model, batch).sums, expected)


@pytest.mark.slow
def test_embedded_smollm2_whole_logp_equals_model_cross_entropy():
    """The real SmolLM2-135M-Instruct: whole-response log-prob of a chat-formatted answer = -CE x n_tokens."""
    model, tokenizer = load_model("embedded:smollm2-135m")
    prompt = tokenizer.apply_chat_template(
        [{"role": "user", "content": "What is 12 + 30?"}], tokenize=False, add_generation_prompt=True
    )
    prompt_ids = tokenizer(prompt, add_special_tokens=False).input_ids
    response_ids = tokenizer("12 + 30 = 42.<|im_end|>", add_special_tokens=False).input_ids
    n = len(response_ids)
    batch = padded_batch([(prompt_ids, response_ids, [0] * (n // 2) + [1] * (n - n // 2))], 2)
    labels = torch.tensor([[-100] * len(prompt_ids) + response_ids])
    with torch.no_grad():
        loss = model(input_ids=batch.input_ids, labels=labels).loss
        out = sequence_segment_logps(model, batch, chunk_size=4)
    torch.testing.assert_close(out.sums[0, 2], -loss * n, rtol=1e-5, atol=1e-4)
    assert -float(loss) > -3.0  # an instruct model finds its own answer format likely: mean log-prob > -3 nats
