"""Schemas of the data-side components (row sources, segmenters) and of the evaluation settings.

Each mirrors its constructor, so a misspelled key under ``data.source``, ``segmenter`` or ``evaluate`` fails at
composition, naming the key.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from omegaconf import MISSING

from hipo.eval.generation import GenerationConfig  # the decoding settings are their own schema

# ---- row sources (data.source) --------------------------------------------------------------------------------------


@dataclass
class SyntheticSourceConfig:
    """The embedded generator of multi-step arithmetic word problems (one error in one segment of the rejected)."""

    _target_: str = "hipo.data.sources.SyntheticSource"
    num_pairs: int = 2000
    seed: int = 0
    split: str = "train"
    format: str = "fields"  # fields | tags | headers | plain
    error_weights: dict[str, float] | None = None
    boxed_fraction: float = 0.5
    mt_error_in_answer: bool = False


@dataclass
class JsonlSourceConfig:
    """A local JSONL file: ``{prompt, chosen, rejected}`` rows or pre-decomposed ``Rq_a ... Ra_b`` fields."""

    _target_: str = "hipo.data.sources.JsonlSource"
    path: str = MISSING
    limit: int | None = None


@dataclass
class HubSourceConfig:
    """A Hugging Face dataset by id (through ``datasets``), or a local file in the same schema (``path``)."""

    _target_: str = "hipo.data.sources.HubSource"
    dataset_id: str = "prhegde/preference-data-math-stack-exchange"
    path: str | None = None
    split: str = "train"
    revision: str | None = None
    limit: int | None = None


# ---- segmenters (segmenter=) ----------------------------------------------------------------------------------------


@dataclass
class _SegmenterCommon:
    segments: list[str] = "${segments}"  # type: ignore[assignment]
    on_failure: str = "skip"  # skip | single_segment | error
    fallback_segment: str | None = "Mt"
    prompt_field: str = "${data.prompt_field}"


@dataclass
class FieldsSegmenterConfig(_SegmenterCommon):
    """Pre-decomposed columns, e.g. ``Rq_a, Mt_a, Ra_a`` (chosen) and ``Rq_b, Mt_b, Ra_b`` (rejected)."""

    _target_: str = "hipo.data.segmenters.FieldsSegmenter"
    name: str = "fields"
    chosen_pattern: str = "{segment}_a"
    rejected_pattern: str = "{segment}_b"
    separator: str = "\n\n"
    allow_empty_segments: bool = False
    chosen_field: str | None = None
    rejected_field: str | None = None


@dataclass
class TagsSegmenterConfig(_SegmenterCommon):
    """Responses written in the paper's format: ``<Rq>…</Rq>`` tags or ``**Refined Query:**``-style headers."""

    _target_: str = "hipo.data.segmenters.TagsSegmenter"
    name: str = "tags"
    aliases: dict[str, list[str]] | None = None
    style: str = "auto"
    optional: list[str] = field(default_factory=list)
    chosen_field: str = "chosen"
    rejected_field: str = "rejected"


@dataclass
class RulesSegmenterConfig(_SegmenterCommon):
    """Heuristics for raw math answers: restatement (Rq), working (Mt), final answer / ``\\boxed{}`` (Ra)."""

    _target_: str = "hipo.data.segmenters.RulesSegmenter"
    name: str = "rules"
    answer_window: int = 2
    min_paragraphs: int = 3
    overlap: float = 0.5
    require_query: bool = False
    chosen_field: str = "chosen"
    rejected_field: str = "rejected"


@dataclass
class ChatClientConfig:
    """An OpenAI-compatible chat-completions endpoint (the judge and the ``llm`` segmenter), via the ``openai`` SDK.

    The key is read from the environment variable ``api_key_env`` (never from the config); hosts other than
    api.openai.com get a placeholder when it is unset. ``max_retries`` and ``timeout_s`` are the SDK's (backoff,
    429 + Retry-After); ``max_invalid_retries`` re-asks for replies that are not valid JSON or fail validation;
    ``requests_per_minute`` spaces request starts (null: no cap); replies are cached under ``cache_dir``.
    """

    _target_: str = "hipo.llm.client.ChatClient"
    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4.1"
    api_key_env: str = "OPENAI_API_KEY"
    timeout_s: float = 60.0
    max_retries: int = 4
    max_invalid_retries: int = 2
    requests_per_minute: float | None = None
    temperature: float = 0.0
    max_tokens: int | None = None
    json_mode: bool = True
    cache_dir: str | None = "${oc.env:HIPO_CACHE,${oc.env:HOME}/.cache/hipo}/llm"


@dataclass
class LLMDecomposerConfig:
    """The decomposer: its client, segments, answer check, and how many requests it keeps in flight."""

    _target_: str = "hipo.data.llm_segmenter.LLMDecomposer"
    client: ChatClientConfig = field(default_factory=ChatClientConfig)
    segments: list[str] = "${segments}"  # type: ignore[assignment]
    check_final_answer: bool = True
    concurrency: int = 16
    progress: bool = True


@dataclass
class LLMSegmenterConfig:
    """The paper's data preparation: an LLM decomposes each raw answer into the segments (validated, cached)."""

    _target_: str = "hipo.data.llm_segmenter.LLMSegmenter"
    name: str = "llm"
    decomposer: LLMDecomposerConfig = field(default_factory=LLMDecomposerConfig)
    chosen_field: str = "chosen"
    rejected_field: str = "rejected"
    separator: str = "\n\n"
    on_failure: str = "skip"
    fallback_segment: str | None = "Mt"
    prompt_field: str = "${data.prompt_field}"


# ---- evaluation (benchmark=, evaluate:) -----------------------------------------------------------------------------


@dataclass
class BenchmarkConfig:
    """One benchmark: a local JSONL file in its schema (``path``), a local copy under ``root``, generated, or the hub.

    Without ``path``: ``<root>/<name>/test.jsonl`` (``root``, else ``evaluate.benchmark_root``), else the generator
    (``synthetic``), else ``$HIPO_SHARED_DIR/data/benchmarks/<name>/test.jsonl``, else the hub.
    """

    name: str = MISSING
    path: str | None = None
    root: str | None = None
    limit: int | None = None
    seed: int = 0


@dataclass
class JudgeConfig:
    """The rubric judge (blind by default)."""

    enabled: bool = False
    client: ChatClientConfig = field(default_factory=ChatClientConfig)
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


SCHEMAS: dict[str, dict[str, object]] = {
    "schema/data/source": {
        "synthetic": SyntheticSourceConfig,
        "jsonl": JsonlSourceConfig,
        "hub": HubSourceConfig,
    },
    "schema/segmenter": {
        "fields": FieldsSegmenterConfig,
        "tags": TagsSegmenterConfig,
        "rules": RulesSegmenterConfig,
        "llm": LLMSegmenterConfig,
    },
    "schema/benchmark": {"benchmark": BenchmarkConfig},
}
