"""Dataclass schemas of the perf config (root ``conf/perf.yaml`` and the groups under ``conf/perf/``).

``hipo perf`` composes ``perf.shape`` (a model architecture, random-init in memory), ``perf.mix`` (a synthetic
length mix) and ``perf.suite`` (the variants to compare and the ratios to print); the rest of ``perf`` holds the
run settings (steps, batch size, isolation, output file).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from omegaconf import MISSING

from hipo.losses.variants import VARIANTS

LOSSES = ("dpo", "hipo", "kto")
FRAMEWORKS = ("hipo", "hipo_train", "trl")
REFERENCES = ("live", "cached")
DTYPES = ("float32", "bfloat16", "float16")
ISOLATIONS = ("auto", "process", "inline")
METRICS = ("median_step_s", "median_loop_step_s", "useful_tokens_per_s", "peak_memory_gib")
# `hipo train` settings the hipo_train runner sets itself, so that both sides do the same work (not overridable)
LOOP_OWNED_KEYS = (
    "output_dir",
    "seed",
    "segments",
    "logger",
    "trainer",
    "trainer.accelerator",
    "trainer.devices",
    "trainer.num_nodes",
    "trainer.strategy",
    "trainer.max_steps",
    "trainer.max_epochs",
    "trainer.precision",
    "trainer.gradient_clip_val",
    "trainer.accumulate_grad_batches",
)


@dataclass
class ShapeConfig:
    """A decoder architecture, built with random weights (no download) unless ``weights=embedded``.

    Attributes:
        name: label in the report.
        architecture: ``llama`` (SmolLM2) or ``qwen2`` (Qwen2.5: q/k/v biases).
        weights: ``random`` or ``embedded`` (the real SmolLM2-135M-Instruct weights; its shape only).
    """

    name: str = MISSING
    architecture: str = "llama"
    vocab_size: int = 49152
    hidden_size: int = MISSING
    intermediate_size: int = MISSING
    num_layers: int = MISSING
    num_heads: int = MISSING
    num_kv_heads: int = MISSING
    tie_word_embeddings: bool = True
    rope_theta: float = 10000.0
    rms_norm_eps: float = 1.0e-5
    max_position_embeddings: int = 8192
    weights: str = "random"


@dataclass
class MixConfig:
    """Prompt and response lengths (tokens) of the synthetic pairs.

    ``fixed``: every prompt ``prompt_length`` and every response ``response_length`` tokens. ``lognormal``: lengths
    ``round(median * exp(sigma * z))``, z ~ N(0, 1), clipped to ``[*_min, *_max]`` (chosen and rejected drawn
    independently).
    """

    name: str = MISSING
    kind: str = "lognormal"
    prompt_length: int = 128
    response_length: int = 300
    sigma: float = 0.7
    prompt_min: int = 32
    prompt_max: int = 256
    response_min: int = 32
    response_max: int = 1024


@dataclass
class VariantConfig:
    """One training configuration to time.

    Attributes:
        framework: hipo (the project's training step, stepped by hand) | hipo_train (the same model, pairs and
            settings stepped by ``hipo train``'s Lightning Trainer, with its callbacks and MLflow logging: see
            :mod:`hipo.perf.train_loop`) | trl (TRL's ``DPOTrainer`` on the same model, pairs and settings: see
            :mod:`hipo.perf.trl_variant`; needs the ``[compare]`` extra; loss dpo, not packed).
        loss: dpo | hipo | kto (KTO sees the pairs as 2B unpaired examples plus 2B KL sequences).
        loss_variant: (dpo, hipo) the loss variant of :mod:`hipo.losses.variants` (``hipo train``'s
            ``loss.variant``); a reference-free one (simpo, cpo, orpo) builds and runs no reference.
        packed: padding-free rows (else one padded row per sequence).
        reference: live (a no-grad reference pass per step) | cached (precomputed before timing).
        lora: LoRA adapters (r = ``perf.lora_r``) instead of full fine-tuning.
        dtype: float32 | bfloat16 (weights and compute).
        autocast: null | bfloat16 | float16: mixed precision over ``dtype`` weights (``torch.autocast`` around the
            forward passes and the loss, as Lightning's ``bf16-mixed``; the master weights stay in ``dtype``).
        compile: ``torch.compile`` the decoder.
        gradient_checkpointing: recompute decoder activations in backward.
        attn_implementation: sdpa | eager | flash_attention_2.
        train_overrides: (hipo_train only) overrides of the composed ``hipo train`` config, as on its command line
            (``trainer.checkpoint_every_n_steps=1``, ``trainer.enable_progress_bar=false``); the keys of
            ``LOOP_OWNED_KEYS`` are the runner's.
    """

    framework: str = "hipo"
    loss: str = "hipo"
    loss_variant: str = "sigmoid"
    packed: bool = True
    reference: str = "live"
    lora: bool = True
    dtype: str = "float32"
    autocast: str | None = None
    compile: bool = False
    gradient_checkpointing: bool = False
    attn_implementation: str = "sdpa"
    train_overrides: list[str] = field(default_factory=list)


@dataclass
class RatioConfig:
    """``metric(numerator) / metric(denominator)``, printed with its target (``le``: ratio <= target)."""

    name: str = MISSING
    numerator: str = MISSING
    denominator: str = MISSING
    metric: str = "median_step_s"
    target: float | None = None
    direction: str = "le"


@dataclass
class SuiteConfig:
    """The variants compared in one run and the ratios printed between them.

    Attributes:
        same_process_losses: paired losses, ``LOSS`` or ``LOSS:VARIANT`` (e.g. [dpo, hipo, "dpo:simpo"]), also
            timed in ONE process on ONE model: each round takes the next batch and runs one step per loss on it
            (rotating the order), swapping only the loss module. This isolates the loss's own cost from
            process-to-process noise; records ``same/<loss>``.
        same_process_loop: a ``framework: hipo_train`` variant also timed against its bare step in ONE process on
            ONE model: before each of the loop's steps, outside its clocks, the same batch takes a bare step (by
            hand, its own optimizer); records ``same/bare`` and ``same/loop`` (null: not run).
    """

    name: str = MISSING
    variants: dict[str, VariantConfig] = field(default_factory=dict)
    same_process_losses: list[str] = field(default_factory=list)
    same_process_loop: VariantConfig | None = None
    ratios: list[RatioConfig] = field(default_factory=list)


@dataclass
class LogprobMemoryConfig:
    """Peak memory of the selected-token log-probs vs the naive fp32 log-softmax (each in a fresh process)."""

    enabled: bool = False
    rows: int = 8
    length: int = 512
    chunk_size: int = 1024
    target: float = 0.5


@dataclass
class PerfConfig:
    """Run settings of ``hipo perf``.

    Attributes:
        pairs_per_step: B; each step scores 2B sequences (plus 2B KL sequences for KTO).
        warmup_steps / steps: untimed then timed real training steps per variant.
        num_batches: distinct synthetic batches, cycled (the same ones for every variant).
        isolation: ``process`` (each variant in its own spawned worker, stepped round-robin so variants are
            interleaved in time; peak RSS per process), ``inline`` (variants one after another in this process;
            on GPU peak = ``max_memory_allocated``), ``auto`` (process on CPU, inline on GPU).
        device: auto | cpu | cuda.
        threads: torch CPU threads (null: all cores).
        attn_implementation: overrides every variant's (e.g. flash_attention_2 on a GPU that has flash-attn).
        out: JSON file for the records (null: none).
    """

    shape: ShapeConfig = MISSING
    mix: MixConfig = MISSING
    suite: SuiteConfig = MISSING
    logprob_memory: LogprobMemoryConfig = field(default_factory=LogprobMemoryConfig)
    pairs_per_step: int = 8
    warmup_steps: int = 1
    steps: int = 5
    num_batches: int = 4
    pack_length: int = 4096
    lora_r: int = 16
    lora_alpha: int = 32
    lr: float = 1.0e-5
    logprob_chunk_size: int = 1024
    gradient_clip: float = 1.0
    isolation: str = "auto"
    device: str = "auto"
    threads: int | None = None
    attn_implementation: str | None = None
    seed: int = 0
    segments: list[str] = field(default_factory=lambda: ["Rq", "Mt", "Ra"])
    out: str | None = None


@dataclass
class PerfRootConfig:
    """The root of ``hipo perf``."""

    perf: PerfConfig = field(default_factory=PerfConfig)


def check_variant(name: str, variant: VariantConfig) -> None:
    """Raises ValueError naming the variant and field for an unknown framework, loss, reference or dtype, or a
    setting the framework cannot run."""
    where = f"perf.suite.variants.{name}"
    if variant.framework not in FRAMEWORKS:
        raise ValueError(f"{where}.framework must be one of {FRAMEWORKS}, got {variant.framework!r}")
    if variant.loss not in LOSSES:
        raise ValueError(f"{where}.loss must be one of {LOSSES}, got {variant.loss!r}")
    if variant.loss_variant not in VARIANTS:
        raise ValueError(f"{where}.loss_variant must be one of {', '.join(VARIANTS)}, got {variant.loss_variant!r}")
    if variant.loss_variant != "sigmoid" and variant.loss == "kto":
        raise ValueError(f"{where}.loss_variant: loss=kto has no pairwise variants")
    if variant.reference not in REFERENCES:
        raise ValueError(f"{where}.reference must be one of {REFERENCES}, got {variant.reference!r}")
    if variant.dtype not in DTYPES:
        raise ValueError(f"{where}.dtype must be one of {DTYPES}, got {variant.dtype!r}")
    if variant.autocast is not None and variant.autocast not in DTYPES[1:]:
        raise ValueError(f"{where}.autocast must be null, bfloat16 or float16, got {variant.autocast!r}")
    if variant.framework == "trl":
        if variant.loss != "dpo":
            raise ValueError(f"{where}: framework=trl runs TRL's DPOTrainer, so loss must be dpo, got {variant.loss!r}")
        if variant.loss_variant != "sigmoid":
            raise ValueError(f"{where}: framework=trl times TRL's sigmoid loss; got {variant.loss_variant!r}")
        if variant.packed:
            raise ValueError(f"{where}: framework=trl needs packed=false (TRL 1.16 disables padding_free)")
        if variant.autocast is not None:
            raise ValueError(f"{where}: framework=trl times pure-dtype steps; set autocast=null")
    if variant.train_overrides and variant.framework != "hipo_train":
        raise ValueError(f"{where}.train_overrides: only framework=hipo_train runs `hipo train`'s config")
    for override in variant.train_overrides:
        key = override.split("=", 1)[0].lstrip("+~")
        well_formed = "=" in override or override.startswith("~")
        if not well_formed or key in LOOP_OWNED_KEYS or key.startswith("logger."):
            raise ValueError(
                f"{where}.train_overrides: {override!r} is not KEY=VALUE (or ~KEY) of a setting the perf run leaves "
                f"to the config (it sets {', '.join(LOOP_OWNED_KEYS)} and logger.* itself)"
            )


def resolve_variant(cfg: PerfConfig, name: str, variant: VariantConfig) -> VariantConfig:
    """``variant`` with the run-wide ``perf.attn_implementation`` applied, checked (:func:`check_variant`); every
    runner (the project's, TRL's) builds from this, so both see the same settings."""
    if cfg.attn_implementation:
        variant = replace(variant, attn_implementation=cfg.attn_implementation)
    check_variant(name, variant)
    return variant
