"""Events that engine jobs yield: plain numbers and small numpy arrays, never torch tensors.

The UI worker re-emits them as Qt signals and the command line draws a progress bar from them,
so nothing here may import torch or Qt.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Log:
    message: str
    level: str = "info"  # "info" | "warning"


@dataclass(frozen=True)
class Progress:
    tensors_done: int
    tensors_total: int
    bytes_done: int
    bytes_total: int
    elapsed_s: float
    current: str = ""

    @property
    def fraction(self) -> float:
        if self.bytes_total:
            return self.bytes_done / self.bytes_total
        return self.tensors_done / max(1, self.tensors_total)

    @property
    def eta_s(self) -> float | None:
        f = self.fraction
        if f <= 0 or self.elapsed_s <= 0:
            return None
        return self.elapsed_s * (1 - f) / f


@dataclass(frozen=True)
class TensorMetrics:
    """How one output tensor relates to the base.

    input_change[i] is ||model_i - base|| / ||base|| for each non-base input (in `models` order);
    result_change is the same for the merged tensor. cosine is the mean pairwise cosine between
    the inputs' changes (None with fewer than two). sign_conflict and kept_fraction are set by
    TIES-like methods: the fraction of elements whose non-zero changes disagree in sign, and the
    fraction of the change's elements that survived sparsification and sign election.
    """

    name: str
    layer: int | None
    kind: str
    numel: int
    models: tuple[str, ...]
    input_change: np.ndarray
    result_change: float
    cosine: float | None = None
    sign_conflict: float | None = None
    kept_fraction: float | None = None


@dataclass(frozen=True)
class LayerMetrics:
    """Aggregates over every tensor of one layer, weighted by element count.

    Sent when the last tensor of a layer is done. Tensors outside numbered layers are
    reported with layer = None.
    """

    layer: int | None
    models: tuple[str, ...]
    input_change: np.ndarray
    result_change: float
    cosine: float | None = None
    sign_conflict: float | None = None
    kept_fraction: float | None = None
    tensors: int = 0


@dataclass(frozen=True)
class PartialFolder:
    """An unfinished output folder beside a job's output: a killed job's leftover, or one still writing."""

    path: str
    kind: str  # the job that writes it: merge, distillation, LoRA extraction, Fisher estimate, ...
    state: str  # running | gone | other host | unknown (no owner record)
    host: str
    pid: int | None
    bytes: int


@dataclass(frozen=True)
class PlanSummary:
    """What a job will do, known before any math (the dry run prints this)."""

    method: str
    models: tuple[str, ...]
    base_model: str | None
    out_dir: str
    tensors: int
    output_bytes: int
    shards: int
    out_dtype: str
    device: str
    num_layers: int
    # The job's own memory at its highest, beyond what the process holds when it starts (the app, or
    # Python and torch themselves): the same for the same recipe, whatever else the process holds.
    estimated_peak_bytes: int
    largest_tensor: str
    warnings: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # work before the merge itself, e.g. estimating Fishers
    # unfinished folders beside OUT_DIR; the merge removes those whose owner is gone
    partial_folders: tuple[PartialFolder, ...] = ()


@dataclass(frozen=True)
class SmokeCheck:
    """One check of a smoke check: its status and a sentence saying what was found."""

    name: str  # "tokenizer", "token ids", "config", "finite", "perplexity", "generation"
    status: str  # "ok" | "suspicious" | "broken" | "skipped"
    detail: str


@dataclass(frozen=True)
class SmokeVerdict:
    """Whether a freshly written model works: the worst status of its checks, with the reasons.

    perplexity is the model's on the built-in text; input_perplexity the same for each input that
    could be loaded, as (label, value) pairs; generations are the model's greedy completions."""

    verdict: str  # "ok" | "suspicious" | "broken"
    reasons: tuple[str, ...]
    checks: tuple[SmokeCheck, ...] = ()
    perplexity: float | None = None
    input_perplexity: tuple[tuple[str, float], ...] = ()
    generations: tuple[tuple[str, str], ...] = ()  # (prompt, completion)
    seconds: float = 0.0


@dataclass(frozen=True)
class MergeResult:
    out_dir: str
    tensors: int
    bytes_written: int
    shards: int
    seconds: float
    # The job's own peak memory: the highest resident memory while it ran, less the process's when it
    # started (so models loaded elsewhere in the app are not counted), sampled every few milliseconds.
    peak_bytes: int
    layer_metrics: tuple[LayerMetrics, ...] = field(default=(), repr=False)
    smoke: SmokeVerdict | None = None  # None when the smoke check was skipped


@dataclass(frozen=True)
class DiffResult:
    models: tuple[str, ...]
    base_model: str | None
    tensors: tuple[TensorMetrics, ...] = field(repr=False)
    layers: tuple[LayerMetrics, ...] = field(repr=False)
    seconds: float = 0.0


@dataclass(frozen=True)
class StepProgress:
    """Progress of a job counted in steps (training steps, evaluation batches or prompts)."""

    stage: str  # what is running, e.g. "pretrain base" or "perplexity: merged"
    done: int
    total: int
    elapsed_s: float
    loss: float | None = None

    @property
    def fraction(self) -> float:
        return self.done / max(1, self.total)


@dataclass(frozen=True)
class EvalRow:
    """One score of one model: a cell of the models x metrics table."""

    model: str
    metric: str  # "perplexity", "count", "reverse" (exact-match accuracy, 0..1)
    value: float
    n: int  # tokens for perplexity, prompts for a skill


@dataclass(frozen=True)
class Generation:
    """One model's completion of one prompt."""

    model: str
    prompt: str
    mode: str  # "greedy" | "sampled"
    text: str


@dataclass(frozen=True)
class EvalResult:
    rows: tuple[EvalRow, ...]
    generations: tuple[Generation, ...] = ()
    seconds: float = 0.0


@dataclass(frozen=True)
class TrainStep:
    """One optimizer step of a distillation: every loss term (unweighted) and their weighted total."""

    step: int
    total_steps: int
    epoch: float
    losses: dict[str, float]  # "total" and each term, averaged over the step's micro-batches
    lr: float
    elapsed_s: float
    taid_t: float | None = None  # TAID's interpolation t used for this step, when TAID is on

    @property
    def fraction(self) -> float:
        return self.step / max(1, self.total_steps)


@dataclass(frozen=True)
class EvalStep:
    """Losses on the held-out blocks at a step: the terms, "total", and "kl_teacher" (forward KL
    at temperature 1), "ce_student" and "ce_teacher" (perplexity = exp of these)."""

    step: int
    losses: dict[str, float]


@dataclass(frozen=True)
class DistillResult:
    out_dir: str
    steps: int
    seconds: float
    final_eval: dict[str, float] = field(default_factory=dict)
    checkpoint_dir: str | None = None  # where checkpoints were kept, if any
    smoke: SmokeVerdict | None = None  # None when the smoke check was skipped


@dataclass(frozen=True)
class LoraModuleError:
    """One module of a LoRA extraction: the rank kept and ||dW - B A|| / ||dW||."""

    name: str  # the module's weight tensor, e.g. "model.layers.0.self_attn.q_proj.weight"
    rank: int
    rel_error: float


@dataclass(frozen=True)
class LoraResult:
    out_dir: str
    modules: tuple[LoraModuleError, ...] = field(repr=False)
    skipped: tuple[str, ...] = field(default=(), repr=False)  # changed tensors a LoRA cannot hold
    bytes_written: int = 0
    seconds: float = 0.0
    # the one rank for every module that keeps 90% of the change's energy (sum of ‖ΔW‖²), from the
    # singular values the extraction computed; None when those do not reach 90% (a randomized SVD)
    rank_for_90: int | None = None

    @property
    def mean_rel_error(self) -> float:
        return sum(m.rel_error for m in self.modules) / max(1, len(self.modules))

    @property
    def max_rel_error(self) -> float:
        return max((m.rel_error for m in self.modules), default=0.0)


Event = Log | Progress | TensorMetrics | LayerMetrics | PlanSummary | StepProgress | EvalRow | Generation | TrainStep | EvalStep | LoraModuleError | SmokeCheck
