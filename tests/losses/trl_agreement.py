"""Test helper: the step-1 loss of TRL 1.16's own trainers on given token ids, for the project-vs-TRL agreement test.

Every trainer is TRL's, built as a user builds it (TRL validates its config), with two changes that keep the token
ids identical to the project's: the pairs arrive already tokenized (``prompt_ids`` / ``chosen_ids`` /
``rejected_ids``, as :func:`hipo.perf.trl_variant.pretokenized_dataset` writes them), so TRL's text tokenization --
and the BOS / EOS tokens that CPO's and ORPO's ``tokenize_row`` would add -- is skipped; and the trainer gets deep
copies of the models (TRL patches the instances it is given: a fused LM head on the forward, the pad id on the
config). The loss is ``trainer.compute_loss`` on the trainer's first collated training batch with the model in
training mode: what TRL's first optimizer step back-propagates. One batch holds every pair.

Needs the ``[compare]`` extra (``trl``): import this module only after ``pytest.importorskip("trl")``.
"""

from __future__ import annotations

import copy
import tempfile
from typing import Any

import torch
import trl
from transformers import LlamaForCausalLM
from trl.experimental.cpo import CPOConfig, CPOTrainer
from trl.experimental.orpo import ORPOConfig, ORPOTrainer

from hipo.data.tokenize import TokenizedPair
from hipo.perf.config import MixConfig
from hipo.perf.random_pairs import synthetic_pairs
from hipo.perf.trl_variant import pretokenized_dataset, pretokenized_trainer_class

NUM_SEGMENTS = 3

# What every trainer shares: fp32 on the CPU, no autocast, no dropout, no truncation, one batch of all the pairs.
COMMON_ARGS: dict[str, Any] = {
    "report_to": "none",
    "bf16": False,
    "fp16": False,
    "use_cpu": True,
    "disable_dropout": True,
    "train_sampling_strategy": "sequential",
    "dataloader_num_workers": 0,
    "save_strategy": "no",
    "logging_strategy": "no",
    "disable_tqdm": True,
    "seed": 0,
}
NO_TRUNCATION = 4096  # CPO's and ORPO's max_length (None there means 512); longer than any test sequence


def pretokenized_row(feature: dict[str, list[int]]) -> dict[str, list[int]]:
    """One pair in the tokenized form of CPO's / ORPO's ``tokenize_row`` (labels -100 on the prompt), no BOS or
    EOS added."""
    prompt = list(feature["prompt_ids"])
    row: dict[str, list[int]] = {"prompt_input_ids": prompt, "prompt_attention_mask": [1] * len(prompt)}
    for side in ("chosen", "rejected"):
        response = list(feature[f"{side}_ids"])
        ids = prompt + response
        row[f"{side}_input_ids"] = ids
        row[f"{side}_attention_mask"] = [1] * len(ids)
        row[f"{side}_labels"] = [-100] * len(prompt) + response
    return row


class PretokenizedCPOTrainer(CPOTrainer):  # type: ignore[misc]
    """``CPOTrainer`` taking the pairs' token ids as they are."""

    def tokenize_row(self, feature: dict[str, Any], model: Any = None) -> dict[str, list[int]]:
        return pretokenized_row(feature)


class PretokenizedORPOTrainer(ORPOTrainer):  # type: ignore[misc]
    """``ORPOTrainer`` taking the pairs' token ids as they are."""

    def tokenize_row(self, feature: dict[str, Any], model: Any = None) -> dict[str, list[int]]:
        return pretokenized_row(feature)


def step1_loss(trainer: Any) -> torch.Tensor:
    """``trainer.compute_loss`` on its first training batch (the model in training mode), detached."""
    inputs = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    trainer.model.train()
    return trainer.compute_loss(trainer.model, inputs).detach()


def trl_dpo_loss(
    policy: torch.nn.Module, reference: torch.nn.Module, pairs: list[TokenizedPair], tokenizer: Any, **config: Any
) -> torch.Tensor:
    """TRL's ``DPOTrainer`` step-1 loss; ``config``: ``DPOConfig`` fields (``loss_type``, ``beta``, ...)."""
    with tempfile.TemporaryDirectory(prefix="hipo-trl-agreement-") as out:
        settings = {**COMMON_ARGS, "max_length": None, **config}
        args = trl.DPOConfig(output_dir=out, per_device_train_batch_size=len(pairs), **settings)
        trainer = pretokenized_trainer_class(trl)(
            model=copy.deepcopy(policy),
            ref_model=copy.deepcopy(reference),
            args=args,
            train_dataset=pretokenized_dataset(pairs),
            processing_class=tokenizer,
        )
        return step1_loss(trainer)


def trl_reference_free_loss(
    kind: str, policy: torch.nn.Module, pairs: list[TokenizedPair], tokenizer: Any, **config: Any
) -> tuple[torch.Tensor, float]:
    """(step-1 loss, its logged ``nll_loss`` term) of TRL's experimental ``CPOTrainer`` (``kind`` cpo) or
    ``ORPOTrainer`` (orpo); ``config``: the trainer's config fields."""
    config_class, trainer_class = {
        "cpo": (CPOConfig, PretokenizedCPOTrainer),
        "orpo": (ORPOConfig, PretokenizedORPOTrainer),
    }[kind]
    with tempfile.TemporaryDirectory(prefix="hipo-trl-agreement-") as out:
        settings = {**COMMON_ARGS, "max_length": NO_TRUNCATION, "remove_unused_columns": False, **config}
        args = config_class(output_dir=out, per_device_train_batch_size=len(pairs), **settings)
        trainer = trainer_class(
            model=copy.deepcopy(policy),
            args=args,
            train_dataset=pretokenized_dataset(pairs),
            processing_class=tokenizer,
        )
        loss = step1_loss(trainer)
        return loss, float(trainer._stored_metrics["train"]["nll_loss"][-1])


def perturbed(model: LlamaForCausalLM, scale: float, seed: int = 1) -> LlamaForCausalLM:
    """A copy of ``model`` with seeded Gaussian noise of ``scale`` times each weight matrix's own std added (norm
    gains, all ones, stay)."""
    copy_ = copy.deepcopy(model)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in copy_.parameters():
            std = float(parameter.std()) if parameter.numel() > 1 else 0.0
            parameter.add_(scale * std * torch.randn(parameter.shape, generator=generator))
    return copy_


def agreement_pairs(count: int, vocab_size: int, prompt: tuple[int, int], seed: int = 0) -> list[TokenizedPair]:
    """``count`` synthetic pairs of 3 segments: prompts of ``prompt`` = (min, max) tokens, responses of 2..20."""
    mix = MixConfig(
        name="trl-agreement",
        kind="lognormal",
        prompt_length=(prompt[0] + prompt[1]) // 2,
        response_length=8,
        sigma=0.7,
        prompt_min=prompt[0],
        prompt_max=prompt[1],
        response_min=2,
        response_max=20,
    )
    return synthetic_pairs(mix, count, NUM_SEGMENTS, vocab_size, seed)
