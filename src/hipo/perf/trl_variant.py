"""The peer baseline: TRL's ``DPOTrainer`` stepped on the same model, pairs and settings as the project's variants.

Needs the optional extra ``pip install -e .[compare]`` (``trl==1.16.0``). What is shared with
:class:`hipo.perf.variant.VariantRunner`, so that only the trainer differs:

* the model: :func:`build_shape_model` with the same seed, LoRA from :func:`apply_lora` (same r, alpha, no dropout,
  all linear layers) or full fine-tuning; weights in the variant's dtype, no autocast on either side;
* the pairs: the same synthetic token ids (:func:`synthetic_pairs`), given to TRL already tokenized as
  ``prompt_ids`` / ``chosen_ids`` / ``rejected_ids`` (TRL's own tokenization is a one-off preprocessing step, not
  part of a training step; skipping it keeps the token ids identical), served in order, ``pairs_per_step`` a step;
* the optimisation: AdamW (betas 0.9/0.999, no weight decay), the run's learning rate held constant, gradient
  clipping at ``perf.gradient_clip``, DPO's sigmoid loss with beta 0.1, no truncation, gradient checkpointing as
  the variant says (TRL's own default is on);
* the reference: ``live`` = TRL's default (the adapter disabled for LoRA, a frozen copy for full fine-tuning);
  ``cached`` = ``precompute_ref_log_probs=True`` (TRL scores the dataset once before training).

A step is TRL's as a user runs it: ``Trainer.train`` with its loop, timed from ``on_step_begin`` (the batch already
collated) to ``on_step_end`` (after the optimizer and scheduler steps); its loop span runs to the next
``on_step_begin`` (the last one's to ``on_train_end``). Useful tokens are TRL's own
``completion_mask`` sum: every response token of the chosen and rejected sequences, which TRL scores -- the same
count as the project's ``segment_ids >= 0``.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from typing import Any

import torch
from transformers import TrainerCallback

from hipo.data.tokenize import TokenizedPair
from hipo.errors import ConfigError
from hipo.models.loading import DEFAULT_MODEL, load_tokenizer, resolve_dtype
from hipo.models.lora import apply_lora
from hipo.perf.clock import StepClock, StepResult
from hipo.perf.config import PerfConfig, VariantConfig, resolve_variant
from hipo.perf.random_pairs import synthetic_pairs
from hipo.perf.shapes import build_shape_model
from hipo.perf.variant import DPO_BETA, resolve_device

TRL_VERSION = "1.16.0"


def import_trl() -> Any:
    """The ``trl`` module, or a ConfigError saying how to install it."""
    try:
        import trl
    except ImportError as error:
        raise ConfigError(
            "a perf variant with framework=trl needs TRL",
            hint=f"pip install -e '.[compare]'  (trl=={TRL_VERSION}), or drop the trl variants from perf.suite",
        ) from error
    return trl


def pretokenized_dataset(pairs: list[TokenizedPair]) -> Any:
    """The pairs as a ``datasets.Dataset`` of TRL's tokenized columns (prompt ids, then each response's ids)."""
    from datasets import Dataset

    rows = []
    for pair in pairs:
        chosen, rejected = pair.paired_sides()
        prompt_length = chosen.prompt_length
        rows.append(
            {
                "prompt_ids": chosen.input_ids[:prompt_length].tolist(),
                "chosen_ids": chosen.input_ids[prompt_length:].tolist(),
                "rejected_ids": rejected.input_ids[rejected.prompt_length :].tolist(),
            }
        )
    return Dataset.from_list(rows)


def pretokenized_trainer_class(trl: Any) -> Any:
    """``DPOTrainer`` that accepts already-tokenized pairs and records each step's scored tokens and loss."""

    class PretokenizedDPOTrainer(trl.DPOTrainer):  # type: ignore[misc,name-defined]  # trl is imported lazily
        perf_last: tuple[int, float] = (0, float("nan"))
        perf_reference_s = 0.0

        def _precompute_ref_logps(self, dataset: Any, name: str, batch_size: int) -> Any:
            started = time.perf_counter()
            try:
                return super()._precompute_ref_logps(dataset, name, batch_size)
            finally:
                self.perf_reference_s += time.perf_counter() - started

        def _prepare_dataset(self, dataset: Any, processing_class: Any, args: Any, dataset_name: str) -> Any:
            if "prompt_ids" in dataset.column_names:
                return dataset
            return super()._prepare_dataset(dataset, processing_class, args, dataset_name)

        def compute_loss(
            self, model: Any, inputs: dict[str, Any], return_outputs: bool = False, num_items_in_batch: Any = None
        ) -> Any:
            out = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss = out[0] if return_outputs else out
            self.perf_last = (int(inputs["completion_mask"].sum()), float(loss.detach()))
            return out

    return PretokenizedDPOTrainer


class TRLRunner:
    """TRL's ``DPOTrainer`` built for one variant (see the module docstring for what is shared).

    Args:
        cfg: the perf settings.
        name: the variant's name.
        variant: ``framework: trl``; ``loss`` must be dpo and ``packed`` false (TRL 1.16 disables padding-free).
    """

    def __init__(self, cfg: PerfConfig, name: str, variant: VariantConfig) -> None:
        trl = import_trl()
        variant = resolve_variant(cfg, name, variant)
        self.cfg, self.name, self.variant = cfg, name, variant
        self.device = resolve_device(cfg.device)
        started = time.perf_counter()
        torch.manual_seed(cfg.seed)
        model: torch.nn.Module
        with torch.device(self.device):
            model = build_shape_model(
                cfg.shape, resolve_dtype(variant.dtype), variant.attn_implementation, seed=cfg.seed
            )
        if variant.lora:
            model = apply_lora(model, r=cfg.lora_r, alpha=cfg.lora_alpha, dropout=0.0)
        self.num_batches = cfg.num_batches
        pairs = synthetic_pairs(
            cfg.mix, cfg.pairs_per_step * cfg.num_batches, len(cfg.segments), cfg.shape.vocab_size, cfg.seed
        )
        self._output_dir = tempfile.TemporaryDirectory(prefix="hipo-perf-trl-")
        self.trainer = pretokenized_trainer_class(trl)(
            model=model,
            args=self._training_args(trl),
            train_dataset=pretokenized_dataset(pairs),
            processing_class=load_tokenizer(DEFAULT_MODEL),
        )
        self.trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
        self.setup_s = time.perf_counter() - started
        self.reference_setup_s = self.trainer.perf_reference_s  # precompute_ref_log_probs: TRL scores in __init__

    def _training_args(self, trl: Any) -> Any:
        cfg, variant = self.cfg, self.variant
        return trl.DPOConfig(
            output_dir=self._output_dir.name,
            per_device_train_batch_size=cfg.pairs_per_step,
            gradient_accumulation_steps=1,
            max_steps=cfg.warmup_steps + cfg.steps,
            learning_rate=cfg.lr,
            lr_scheduler_type="constant",
            warmup_steps=0,
            weight_decay=0.0,
            optim="adamw_torch",
            adam_beta1=0.9,
            adam_beta2=0.999,
            max_grad_norm=cfg.gradient_clip or 0.0,
            beta=DPO_BETA,
            loss_type=["sigmoid"],
            max_length=None,
            precompute_ref_log_probs=variant.reference == "cached",
            precompute_ref_batch_size=cfg.pairs_per_step,
            gradient_checkpointing=variant.gradient_checkpointing,
            bf16=False,  # no autocast: the weights are already in the variant's dtype, as on the project's side
            fp16=False,
            torch_compile=variant.compile,
            train_sampling_strategy="sequential",
            dataloader_num_workers=0,
            use_cpu=self.device.type == "cpu",
            seed=cfg.seed,
            report_to="none",
            save_strategy="no",
            logging_strategy="no",
            disable_tqdm=True,
        )

    def run(
        self, total_steps: int, before_step: Callable[[], None], after_step: Callable[[StepResult], None]
    ) -> list[StepResult]:
        """``Trainer.train`` for ``total_steps`` steps; ``before_step`` runs before each step's clock starts."""
        if total_steps != self.trainer.args.max_steps:
            raise ValueError(f"{self.name}: built for {self.trainer.args.max_steps} steps, asked for {total_steps}")
        clock = _StepClock(self, before_step, after_step)
        self.trainer.add_callback(clock)
        self.trainer.train()
        self.reference_setup_s = self.trainer.perf_reference_s  # (again: a TRL version scoring in train())
        return clock.results

    def close(self) -> None:
        self._output_dir.cleanup()


class _StepClock(TrainerCallback):
    """Times each optimizer step of :class:`TRLRunner`'s trainer (and the loop around it: :class:`StepClock`)."""

    def __init__(
        self, runner: TRLRunner, before_step: Callable[[], None], after_step: Callable[[StepResult], None]
    ) -> None:
        self.runner = runner
        self.clock = StepClock(runner.device, before_step, after_step)
        self.results = self.clock.results

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.clock.begin()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        tokens, loss = self.runner.trainer.perf_last
        self.clock.end(tokens, loss, len(self.results) % self.runner.num_batches)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.clock.finish()
