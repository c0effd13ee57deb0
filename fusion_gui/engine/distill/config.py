"""The distillation YAML: parse and validate everything before any model or data is read.

```yaml
teacher: path/to/teacher          # causal-LM folders
student: path/to/student
data:
  path: corpus.txt                # .txt, .jsonl or a datasets.save_to_disk folder; a .jsonl of chat
                                  # `messages` or `prompt`/`completion` rows trains on the answers only
  text_field: text                # for .jsonl and datasets
  eval_fraction: 0.1              # held-out blocks (at least one)
losses:                           # name: weight, or name: {weight: w, <params>}
  forward_kl: 1.0
  taid: {weight: 1.0, t_start: 0.4, t_end: 1.0, alpha: 5.0e-4, momentum: 0.99}
  ce: 0.1
temperature: 1.0                  # softens the logit losses (their value is scaled by T^2)
training:
  max_steps: 200                  # or epochs: 1
  batch_size: 8
  seq_length: 128
  learning_rate: 5.0e-5
  lr_schedule: cosine             # linear | cosine | constant
  warmup_steps: 0
  grad_accumulation: 1
  precision: fp32                 # fp32 | bf16 | fp16 (bf16/fp16 only on a GPU)
  eval_every: 50                  # 0: evaluate at the end only
  checkpoint_every: 0             # 0: no checkpoints
  checkpoint_dir: null            # default: OUT_DIR-checkpoints beside the output
  resume_from: null               # a checkpoint-N folder
  seed: 0
  device: auto                    # auto | cpu
  loss_chunk: 512                 # positions per chunk of the logit losses (full logits never exist); 0: off
  lora_rank: 0                    # > 0: train the student as a LoRA of this rank, merged at the end
  lora_alpha: 16
```
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.parse_text import load_yaml, read_text
from fusion_gui.engine.distill.teacher_options import OnPolicySpec, check_teacher_options, parse_on_policy

@dataclass(frozen=True)
class LossParam:
    """One loss parameter: its default, its allowed range (None = open) and a line of help."""

    name: str
    default: float
    low: float | None = None
    high: float | None = None
    help: str = ""


@dataclass(frozen=True)
class LossInfo:
    """What a loss is, for validation here and the generated form in the app."""

    name: str
    label: str
    help: str
    params: tuple[LossParam, ...] = ()


LOSS_SPECS: dict[str, LossInfo] = {s.name: s for s in (
    LossInfo("forward_kl", "Forward KL", "KL(teacher || student) on the logits: mass-covering, the classic loss."),
    LossInfo("reverse_kl", "Reverse KL", "KL(student || teacher): mode-seeking."),
    LossInfo("jsd", "Generalized JSD", "TRL GKD's generalized Jensen-Shannon divergence.", (
        LossParam("beta", 0.5, 0.0, 1.0, "Weight of the teacher in the mixture: 0 = forward KL, 1 = reverse KL."),)),
    LossInfo("taid", "TAID", "Temporally adaptive interpolated distillation: the target moves from the "
             "student's own distribution to the teacher's as t rises.", (
        LossParam("t_start", 0.4, 0.0, 1.0, "Interpolation t at the first step."),
        LossParam("t_end", 1.0, 0.0, 1.0, "Interpolation t at the last step (above t_start)."),
        LossParam("alpha", 5e-4, 0.0, None, "How fast t rises with the loss's relative improvement."),
        LossParam("momentum", 0.99, 0.0, 1.0, "Momentum of the improvement estimate (below 1)."))),
    LossInfo("hidden_mse", "Hidden-state MSE", "Mean squared error between the last hidden states "
             "(a learned projection when the widths differ)."),
    LossInfo("hidden_cosine", "Hidden-state cosine", "1 - cosine similarity of the last hidden states."),
    LossInfo("ce", "Cross-entropy", "Next-token cross-entropy of the student on the data itself."),
    LossInfo("uld", "Universal logit distillation", "Sorted-probability Wasserstein distance (Boizard et al. "
             "2024): needs no shared tokens; across vocabularies it covers the tokens only one side has."),
)}
# name -> (parameter -> default); weight is common to all
LOSS_PARAMS: dict[str, dict[str, float]] = {n: {p.name: p.default for p in s.params} for n, s in LOSS_SPECS.items()}
SCHEDULES = ("linear", "cosine", "constant")
PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class LossSpec:
    name: str
    weight: float
    params: dict = field(default_factory=dict)


@dataclass(frozen=True)
class DataSpec:
    path: str
    text_field: str = "text"
    eval_fraction: float = 0.1


@dataclass(frozen=True)
class TrainOptions:
    max_steps: int | None = None
    epochs: float | None = None
    batch_size: int = 8
    seq_length: int = 128
    learning_rate: float = 5e-5
    lr_schedule: str = "cosine"
    warmup_steps: int = 0
    grad_accumulation: int = 1
    precision: str = "fp32"
    eval_every: int = 0
    checkpoint_every: int = 0
    checkpoint_dir: str | None = None
    resume_from: str | None = None
    seed: int = 0
    device: str = "auto"
    loss_chunk: int = 512  # x 128k vocabulary x 4 bytes x ~7 copies: about 1.9 GB at the loss
    lora_rank: int = 0
    lora_alpha: float = 16.0


@dataclass(frozen=True)
class DistillConfig:
    teacher: str
    student: str
    data: DataSpec
    losses: tuple[LossSpec, ...]
    training: TrainOptions = TrainOptions()
    temperature: float = 1.0
    teacher_cache: str | None = None  # teacher_options: read the teacher's top-k from a capture
    on_policy: OnPolicySpec | None = None  # teacher_options: GKD's lmbda share of student-written batches


def _check_keys(d: dict, allowed, where: str) -> None:
    if not isinstance(d, dict):
        raise InputError(f"'{where}' must be a mapping, not {type(d).__name__}.")
    unknown = sorted(map(repr, set(d) - set(allowed)))  # YAML keys may be numbers too
    if unknown:
        raise InputError(f"Unknown key(s) in {where}: {', '.join(unknown)} "
                         f"(allowed: {', '.join(allowed)}).")


def _number(value, where: str, kind=float, low=None, high=None):
    if kind is float and isinstance(value, str):  # YAML 1.1 reads 1e-3 (no dot) as a string
        try:
            value = float(value)
        except ValueError:
            pass
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and not isinstance(value, int))
            or (isinstance(value, float) and not math.isfinite(value)) or abs(value) > 1e300):
        raise InputError(f"'{where}' must be {'an integer' if kind is int else 'a finite number'}, not {value!r}.")
    if (low is not None and value < low) or (high is not None and value > high):
        raise InputError(f"'{where}' = {value} is out of range [{low}, {high if high is not None else 'inf'}].")
    return kind(value)


def _losses(raw) -> tuple[LossSpec, ...]:
    _check_keys(raw, tuple(LOSS_PARAMS), "losses")
    specs = []
    for name, value in raw.items():
        if not isinstance(value, dict):
            value = {"weight": value}
        _check_keys(value, ("weight", *LOSS_PARAMS[name]), f"losses.{name}")
        params = {p.name: _number(value.get(p.name, p.default), f"losses.{name}.{p.name}", low=p.low, high=p.high)
                  for p in LOSS_SPECS[name].params}
        specs.append(LossSpec(name, _number(value.get("weight", 1.0), f"losses.{name}.weight", low=0), params))
    if not any(s.weight > 0 for s in specs):
        raise InputError("'losses' needs at least one loss with a positive weight.")
    p = next((s.params for s in specs if s.name == "jsd"), None)
    if p is not None and not 0 <= p["beta"] <= 1:
        raise InputError(f"'losses.jsd.beta' = {p['beta']} must lie in [0, 1].")
    p = next((s.params for s in specs if s.name == "taid"), None)
    if p is not None and not (0 <= p["t_start"] < p["t_end"] <= 1 and 0 <= p["momentum"] < 1 and p["alpha"] >= 0):
        raise InputError("'losses.taid' needs 0 <= t_start < t_end <= 1, 0 <= momentum < 1 and alpha >= 0.")
    return tuple(specs)


def _training(raw: dict) -> TrainOptions:
    names = tuple(TrainOptions.__dataclass_fields__)
    _check_keys(raw, names, "training")
    if raw.get("max_steps") is not None and raw.get("epochs") is not None:
        raise InputError("'training' takes max_steps or epochs, not both.")
    ints = {"max_steps": 1, "batch_size": 1, "seq_length": 2, "warmup_steps": 0, "grad_accumulation": 1,
            "eval_every": 0, "checkpoint_every": 0, "seed": 0, "loss_chunk": 0, "lora_rank": 0}
    values = {}
    for key, value in raw.items():
        if value is None:
            values[key] = None
        elif key in ints:
            values[key] = _number(value, f"training.{key}", int, low=ints[key])
        elif key in ("epochs", "learning_rate", "lora_alpha"):
            values[key] = _number(value, f"training.{key}", low=0)
        else:
            values[key] = str(value)
    for key, allowed in (("lr_schedule", SCHEDULES), ("precision", PRECISIONS), ("device", ("auto", "cpu"))):
        if key in values and values[key] not in allowed:
            raise InputError(f"'training.{key}' = {values[key]!r}; choose one of {', '.join(allowed)}.")
    return TrainOptions(**{k: v for k, v in values.items() if v is not None or k in ("checkpoint_dir", "resume_from")})


def config_from_dict(raw: dict) -> DistillConfig:
    _check_keys(raw, ("teacher", "student", "data", "losses", "training", "temperature", "teacher_cache",
                      "on_policy"), "the distill config")
    for key in ("teacher", "student", "data", "losses"):
        if raw.get(key) in (None, "", {}):
            raise InputError(f"The distill config needs '{key}'.")
    data = raw["data"] if isinstance(raw["data"], dict) else {"path": raw["data"]}
    _check_keys(data, ("path", "text_field", "eval_fraction"), "data")
    if not data.get("path"):
        raise InputError("'data' needs a 'path'.")
    spec = DataSpec(str(data["path"]), str(data.get("text_field", "text")),
                    _number(data.get("eval_fraction", 0.1), "data.eval_fraction", low=0, high=0.9))
    losses, training = _losses(raw["losses"]), _training(raw.get("training") or {})
    cache = str(raw["teacher_cache"]) if raw.get("teacher_cache") else None
    on_policy = parse_on_policy(raw.get("on_policy"))
    check_teacher_options(cache, on_policy, losses, training.seq_length)
    return DistillConfig(str(raw["teacher"]), str(raw["student"]), spec, losses, training,
                         _number(raw.get("temperature", 1.0), "temperature", low=1e-3), cache, on_policy)


def load_config(path: str | Path) -> DistillConfig:
    path = Path(path)
    raw = load_yaml(read_text(path, "Distill config"), f"Distill config '{path}'")
    if not isinstance(raw, dict):
        raise InputError(f"Distill config '{path}' must be a YAML mapping.")
    return config_from_dict(raw)


def config_to_dict(config: DistillConfig) -> dict:
    losses = {s.name: ({"weight": s.weight, **s.params} if s.params else s.weight) for s in config.losses}
    return {"teacher": config.teacher, "student": config.student, "data": asdict(config.data),
            "losses": losses, "temperature": config.temperature, "training": asdict(config.training)} | (
        {"teacher_cache": config.teacher_cache} if config.teacher_cache else {}) | (
        {"on_policy": asdict(config.on_policy)} if config.on_policy else {})


def dump_config(config: DistillConfig) -> str:
    return yaml.safe_dump(config_to_dict(config), sort_keys=False)
