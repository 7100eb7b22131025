"""Dataclass schemas of the settings groups (model, data, trainer, logger, evaluation) and of the command roots.

They are registered in Hydra's ConfigStore by :mod:`hipo.config.register`, the one registry. Nodes that build an
object (``_target_``: losses, weight schemes, segmenters, row sources, chat clients) have no hand-written schema:
they are checked against their constructors (:mod:`hipo.config.components`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from omegaconf import MISSING

from hipo.eval.generation import GenerationConfig  # the decoding settings are their own schema


@dataclass
class LoraConfig:
    """LoRA adapters (peft). With LoRA the reference is the base model with adapters disabled (no second copy)."""

    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: Any = "all-linear"


@dataclass
class ModelConfig:
    """Which policy model to train.

    Attributes:
        name_or_path: ``embedded:smollm2-135m`` (default, offline), ``tiny`` (random 2-layer, tests), a hub id or a
            local folder.
        dtype: float32 | bfloat16 | float16 (bf16: 1.87x fp32 speed on the project CPU, see experiments/perf).
        attn_implementation: sdpa | eager | flash_attention_2 (GPU) | flex_attention.
        gradient_checkpointing: recompute activations in backward (less memory, ~30% more compute).
        compile: wrap the policy in ``torch.compile``.
        logprob_chunk_size: rows of hidden states per chunk when computing selected-token log-probs.
        adapter_path: a saved LoRA adapter to load onto the base model (evaluation, continued training); the
            reference of continued training is that adapter unless ``reference_adapter_path`` names another.
        reference_adapter_path: a saved LoRA adapter the reference scores with instead (iterative rounds whose
            reference stays the SFT model while the policy starts from the previous round's adapter).
    """

    name_or_path: str = "embedded:smollm2-135m"
    dtype: str = "float32"
    attn_implementation: str = "sdpa"
    gradient_checkpointing: bool = False
    compile: bool = False
    logprob_chunk_size: int = 1024
    revision: str | None = None
    trust_remote_code: bool = False
    adapter_path: str | None = None
    reference_adapter_path: str | None = None
    lora: LoraConfig = field(default_factory=LoraConfig)


@dataclass
class OptimConfig:
    """AdamW over the trainable policy parameters and the learned segment weights."""

    lr: float = 5.0e-6
    weights_lr: float = 1.0e-2
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    scheduler: str = "cosine"  # cosine | linear | constant


_LAST_CHECKPOINT = "${output_dir}/checkpoints/last.ckpt"  # what resume=auto picks (hipo.training.checkpoints.LAST)


def _training_callbacks() -> dict[str, Any]:
    """The default ``trainer.callbacks``, in the order the Trainer runs them (see :class:`TrainerConfig`)."""
    return {
        "exact_resume": {"_target_": "hipo.training.exact_resume.ExactResume", "crash_checkpoint": _LAST_CHECKPOINT},
        "stop_at_step_boundary": {
            "_target_": "hipo.training.preemption.StopAtStepBoundary",
            "checkpoint_path": _LAST_CHECKPOINT,
        },
        "lr_monitor": {"_target_": "lightning.pytorch.callbacks.LearningRateMonitor", "logging_interval": "step"},
        "last_checkpoint": {
            "_target_": "hipo.training.checkpoints.last_checkpoint_callback",
            "dirpath": "${output_dir}/checkpoints",
            "every_n_train_steps": "${trainer.checkpoint_every_n_steps}",
        },
        "progress_bar": {  # `step N/max_steps`, not `Epoch 0/-2`; none when the Trainer shows no bar
            "_target_": "hipo.training.progress.step_progress_bar",
            "enabled": "${trainer.enable_progress_bar}",
        },
    }


@dataclass
class TrainerConfig:
    """The Lightning Trainer: ``instantiate`` of this node (:func:`hipo.app.lightning_trainer.build_trainer`).

    Every key is an argument of ``_target_`` (``lightning.pytorch.Trainer``) under its own name, except those in
    :attr:`CONFIG_ONLY_KEYS`; a Trainer argument added here or on the command line (``+trainer.benchmark=true``)
    reaches the Trainer as it is. The Trainer's ``strategy`` (``auto`` with several devices -> ``ddp``), ``logger``,
    ``plugins``, ``default_root_dir``, ``use_distributed_sampler=False`` and ``enable_model_summary=False`` are set
    by the job.

    Attributes:
        devices: devices per node; with ``strategy`` ddp / fsdp / deepspeed one process each (HiPO starts them on one
            node; a cluster launcher on several).
        val_check_interval: validate every N training batches (an int) or this fraction of an epoch (a float).
        check_val_every_n_epoch: validate at every N-th epoch end; ``null`` with an int ``val_check_interval``
            counts batches across epochs (a multi-epoch run validated once, at its last step).
        num_nodes: nodes of a multi-node job (started by ``hydra/launcher=slurm`` or torchrun, one task per device).
        checkpoint_every_n_steps: write ``checkpoints/last.ckpt`` every N optimizer steps (0: at the end only).
        callbacks: named ``_target_`` nodes, built in this order (null entries are skipped): exact resume (data
            position and RNG states in every checkpoint; a checkpoint on a crash), the stop at a step boundary on a
            signal (with a checkpoint), learning-rate logging, the periodic ``last.ckpt`` (overwritten in place) and
            the step progress bar. ``trainer.callbacks.lr_monitor=null`` drops one;
            ``+trainer.callbacks.mine={_target_: my.Callback}`` adds one.
    """

    CONFIG_ONLY_KEYS: ClassVar[tuple[str, ...]] = ("checkpoint_every_n_steps",)  # not Trainer arguments

    _target_: str = "lightning.pytorch.Trainer"
    accelerator: str = "auto"
    devices: Any = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    max_steps: int = 100
    max_epochs: int = -1
    accumulate_grad_batches: int = 1
    gradient_clip_val: float | None = 1.0
    log_every_n_steps: int = 1
    val_check_interval: Any = None
    check_val_every_n_epoch: int | None = 1
    limit_val_batches: Any = None
    num_sanity_val_steps: int = 0
    enable_progress_bar: bool = True
    checkpoint_every_n_steps: int = 50
    deterministic: bool = False
    callbacks: dict[str, Any] = field(default_factory=_training_callbacks)


@dataclass
class DataConfig:
    """Segmented preference data: a source of rows plus tokenization and batching settings.

    The node builds the data module: ``hydra.utils.instantiate`` of ``_target_``
    (:class:`hipo.data.datamodule.PreferenceDataModule`) with every key but :attr:`CONFIG_ONLY_KEYS` as a
    constructor argument of the same name, ``source`` / ``val_source`` built first
    (:func:`hipo.app.builders.build_datamodule`). The segmenter, tokenizer, ``segments``, ``paired`` and ``seed``
    come from the job.

    Attributes:
        name: a short label for tags and run names.
        source: a ``_target_`` node building the row source (synthetic generator, JSONL file, hub dataset).
        max_length: tokens per sequence (prompt + response) before the truncation policy applies.
        truncation: drop_pair | truncate_segment.
        truncate_from: the segment shortened first under ``truncate_segment``.
        packed: padding-free batches (several sequences per row, attention confined to each).
        pack_length: tokens per packed row.
        val_source: a separate validation source (``null``: hold out ``val_fraction`` of ``source``).
        prompt_field: the rows' prompt column (``question`` for the synthetic and Math-Stack-Exchange data).
        val_fraction: held-out share of the rows when the source has no validation split.
        system_prompt: optional system message for the chat template (``null``: the template's default).
        length_grouped: padded mode batches pairs of similar length (less padding).
    """

    # labels and values other keys interpolate (``source.path: ${..path}``), not constructor arguments
    CONFIG_ONLY_KEYS: ClassVar[tuple[str, ...]] = ("name", "path", "prompt_field")

    _target_: str = "hipo.data.datamodule.PreferenceDataModule"
    name: str = MISSING
    source: Any = MISSING
    val_source: Any = None
    path: str | None = None  # the data file of file-based sources (``data=jsonl data.path=FILE``)
    prompt_field: str = "question"
    batch_size: int = 4
    eval_batch_size: int = 8
    max_length: int = 512
    truncation: str = "truncate_segment"
    truncate_from: str = "Mt"
    packed: bool = False
    pack_length: int = 2048
    val_fraction: float = 0.1
    max_val_pairs: int | None = None
    num_workers: int = 0
    system_prompt: str | None = None
    length_grouped: bool = True
    use_cache: bool = True


@dataclass
class LoggerConfig:
    """MLflow tracking (embedded SQLite store + ./mlruns artifacts by default).

    ``parent_run_id``: the run this job's run nests under (``hipo iterate`` sets it for each round's steps; a
    sweep's jobs nest under the sweep's parent without it).
    """

    tracking_uri: str = "sqlite:///mlflow.db"
    artifact_location: str = "mlruns"
    experiment_name: str = "hipo"
    run_name: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    parent_run_id: str | None = None


# ---- evaluation (benchmark=, evaluate:) -----------------------------------------------------------------------------


@dataclass
class BenchmarkConfig:
    """One benchmark: a local JSONL file in its schema (``path``), a local copy under ``root``, generated, or the hub.

    Without ``path``: ``<root>/<name>/test.jsonl`` (``root``, else ``evaluate.benchmark_root``), else the generator
    (``synthetic``), else ``$HIPO_SHARED_DIR/data/benchmarks/<name>/test.jsonl``, else the hub.
    """

    name: str = MISSING
    spec: str | None = None  # import path of a BenchmarkSpec (a benchmark defined outside hipo.eval.benchmarks)
    path: str | None = None
    root: str | None = None
    limit: int | None = None
    seed: int = 0


@dataclass
class JudgeConfig:
    """The rubric judge (blind by default)."""

    enabled: bool = False
    client: Any = None  # a chat-client node: conf/llm_client/openai.yaml, placed here by the root configs
    concurrency: int = 16  # requests in flight; the rate cap is client.requests_per_minute
    blind: bool = True
    include_reference: bool = True
    # false: a benchmark on which every judgment failed (unreachable server, bad key) fails `hipo eval` (exit 2);
    # true: such a run finishes, the table shows "judge FAILED n/n" and no judge scores are recorded
    allow_failures: bool = False


@dataclass
class EvaluateConfig:
    """How benchmarks are evaluated (``hipo eval``, and ``hipo train`` when ``enabled``); which ones: ``benchmark=``.

    Attributes:
        enabled: `hipo train` evaluates the trained policy at the end (``hipo eval`` always evaluates).
        engine: ``hf`` (transformers ``generate``) or ``vllm`` (GPU, when installed); same prompts and grading.
        limit: overrides every benchmark's ``limit`` (quick runs).
        benchmark_root: a folder holding local copies ``<root>/<name>/test.jsonl`` of the selected benchmarks
            (read before any hub access; a benchmark's own ``root`` or ``path`` wins).
        samples_dir: also write per-sample records under this folder (default: the run's output dir).
    """

    enabled: bool = False
    generation: GenerationConfig = field(default_factory=lambda: GenerationConfig(progress=True))
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    engine: str = "hf"
    limit: int | None = None
    benchmark_root: str | None = None
    samples_dir: str | None = None


@dataclass
class IterateConfig:
    """Rounds of ``hipo iterate experiment=NAME`` (:mod:`hipo.app.iterate_command`), set in the experiment.

    Attributes:
        rounds: how many (pairs from policy r -> train policy r + 1) rounds.
        start: round 0's policy, a `hipo train` output's ``final/`` adapter (e.g. the SFT run); null: the base model.
        reference: ``previous`` (each round's reference is the policy it starts from, as iterative DPO) or
            ``start`` (every round against the start policy).
        pairs: overrides of every round's ``hipo pairs`` (problems, num_samples, selection, generation, segmenter).
        train: overrides of every round's ``hipo train`` (after the experiment: method, steps, segmenter).
    """

    rounds: int = 2
    start: str | None = None
    reference: str = "previous"
    pairs: list[str] = field(default_factory=list)
    train: list[str] = field(default_factory=list)


@dataclass
class RunConfig:
    """The root of ``hipo train`` / ``hipo segment`` / ``hipo pipeline`` configs (``conf/config.yaml``).

    ``experiment`` is the chosen ``conf/experiment`` file (``${hipo.choice:experiment}`` in the root config).
    ``hipo eval`` and ``hipo report`` have their own roots (:class:`EvalRunConfig`, :class:`ReportRunConfig`).
    """

    model: ModelConfig = MISSING
    loss: Any = MISSING
    data: DataConfig = MISSING
    segmenter: Any = MISSING
    trainer: TrainerConfig = MISSING
    optim: OptimConfig = field(default_factory=OptimConfig)
    logger: LoggerConfig = MISSING
    segments: list[str] = field(default_factory=lambda: ["Rq", "Mt", "Ra"])
    seed: int = 0
    method: str | None = None  # label for reports (defaults to the loss name)
    experiment: str | None = None
    output_dir: str = "${hydra:runtime.output_dir}"
    # a checkpoint path, or "auto": the newest readable checkpoint of output_dir if there is one (else from step 0);
    # jobs started by the SLURM launcher (submitit) default to "auto", so a requeued job resumes by itself
    resume: str | None = None
    reference_cache: bool = False
    benchmark: dict[str, Any] = field(default_factory=dict)  # benchmark=[gsm8k,synthetic]: evaluated when enabled
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    num_examples: int = 5  # `hipo segment`: how many pairs to show
    objective: str | None = None  # a final metric (e.g. val_after/rewards/accuracy/whole) returned to a sweeper
    tune: dict[str, Any] = field(default_factory=dict)  # free variables for sweepers, interpolated by other keys
    iterate: IterateConfig = field(default_factory=IterateConfig)  # `hipo iterate`: the experiment's rounds


@dataclass
class EvalRunConfig:
    """Root of `hipo eval`: a model (base, adapter or checkpoint) evaluated on the selected benchmarks."""

    model: ModelConfig = MISSING
    logger: LoggerConfig = MISSING
    benchmark: dict[str, Any] = field(default_factory=dict)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    checkpoint: str | None = None  # a `hipo train` output folder (…/final) or a Lightning .ckpt
    limit: int | None = None  # shortcut for evaluate.limit
    seed: int = 0
    label: str | None = None  # the method name reports show (tag hipo.method); default base / checkpoint
    output_dir: str = "${hydra:runtime.output_dir}"


@dataclass
class ProblemsConfig:
    """Training problems of ``hipo pairs`` (``problems=synthetic|synthetic_easy|jsonl``): never an evaluation split.

    Attributes:
        name: a label for tags and run names.
        benchmark: the benchmark whose schema the problems follow (question fields, gold reader, answer format) and
            whose held-out set they are checked against: ``synthetic`` / ``synthetic_easy`` generate the
            generator's training split of that level; any other needs ``path``.
        path: a JSONL file of training problems in that benchmark's schema.
        seed: the generator's seed (generated problems) or the subset's (``limit`` below a file's size).
    """

    name: str = MISSING
    benchmark: str = MISSING
    path: str | None = None
    seed: int = 0


@dataclass
class SelectionConfig:
    """Which (correct, incorrect) sample combinations of a problem become pairs (:mod:`hipo.onpolicy.selection`)."""

    mode: str = "all"  # all: every combination up to max_pairs_per_problem | one: one pair per problem
    max_pairs_per_problem: int = 4


@dataclass
class PairsRunConfig:
    """Root of `hipo pairs`: sample ``num_samples`` responses per training problem, grade them, write pairs.

    Attributes:
        out: the pairs file (JSONL, TRL's standard format + gold and grades); its samples go to
            ``<out>.samples.jsonl``, which a rerun of the same command resumes from.
        num_samples: K, generations per problem (>= 2), sharing one prefill of the prompt.
        limit: the first N problems (generated) or a seeded subset of N (a file).
        chunk_size: problems per sampling chunk, the unit of resume.
        seed: the sampling seed (``evaluate.generation.seed``) and the pair-selection seed.
        checkpoint: a `hipo train` output folder (``…/final``) or ``.ckpt`` to sample from, as in ``hipo eval``.
        label: the policy's name in tags and the run name (default: base / checkpoint).
    """

    model: ModelConfig = MISSING
    logger: LoggerConfig = MISSING
    problems: ProblemsConfig = MISSING
    segmenter: Any = MISSING
    segments: list[str] = field(default_factory=lambda: ["Rq", "Mt", "Ra"])
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    selection: SelectionConfig = field(default_factory=SelectionConfig)
    out: str = MISSING
    num_samples: int = 8
    limit: int | None = None
    chunk_size: int = 32
    seed: int = 0
    checkpoint: str | None = None
    label: str | None = None
    output_dir: str = "${hydra:runtime.output_dir}"


@dataclass
class ReportRunConfig:
    """Root of `hipo report`: which runs (one selector), the baseline, and where the files go."""

    logger: LoggerConfig = MISSING
    experiment_config: str | None = (
        None  # `experiment=NAME` on the command line: its latest sweep (tag hipo.experiment)
    )
    mlflow_experiment: str | None = None  # an MLflow experiment name (alone: all its runs)
    sweep_id: str | None = None
    parent_run_id: str | None = None
    baseline: str | None = "dpo"
    group_by: str = "hipo.method"
    n_resamples: int = 10_000
    seed: int = 0
    out_dir: str | None = None  # default: experiments/<experiment>/report, else reports/<selector>
    log_to_parent: bool = True
