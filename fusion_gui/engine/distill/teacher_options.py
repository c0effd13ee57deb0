"""The distill config's teacher-side options: an offline teacher cache and on-policy batches.

```yaml
teacher_cache: teacher-cache/     # read the teacher's top-k from here (fusion-gui capture-teacher); no teacher loaded
on_policy:                        # GKD's lmbda: a share of batches the student completes itself
  lmbda: 0.5                      # share of training batches that are on-policy (0 = off)
  max_new_tokens: 32              # tokens the student writes after each prompt
  temperature: 1.0                # sampling temperature (0 = greedy)
  samples_every: 10               # steps between live samples shown to the user (0 = none)
```
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from fusion_gui.engine.errors import InputError

CACHE_LOSSES = ("forward_kl", "ce")  # what a teacher known by its top k supports


@dataclass(frozen=True)
class OnPolicySpec:
    lmbda: float = 0.5
    max_new_tokens: int = 32
    temperature: float = 1.0
    samples_every: int = 10


def _finite(value, where: str, low: float, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(f"'{where}' must be a finite number, not {value!r}.")
    if value < low or (high is not None and value > high):
        raise InputError(f"'{where}' = {value} is out of range [{low}, {high if high is not None else 'inf'}].")
    return value


def parse_on_policy(raw) -> OnPolicySpec | None:
    if raw in (None, {}, False):
        return None
    if not isinstance(raw, dict):
        raise InputError(f"'on_policy' must be a mapping (lmbda, max_new_tokens, temperature), not {raw!r}.")
    unknown = sorted(set(raw) - set(OnPolicySpec.__dataclass_fields__))
    if unknown:
        raise InputError(f"Unknown key(s) in on_policy: {', '.join(map(repr, unknown))} "
                         f"(allowed: {', '.join(OnPolicySpec.__dataclass_fields__)}).")
    d = OnPolicySpec()
    spec = OnPolicySpec(float(_finite(raw.get("lmbda", d.lmbda), "on_policy.lmbda", 0.0, 1.0)),
                        int(_finite(raw.get("max_new_tokens", d.max_new_tokens), "on_policy.max_new_tokens", 1)),
                        float(_finite(raw.get("temperature", d.temperature), "on_policy.temperature", 0.0)),
                        int(_finite(raw.get("samples_every", d.samples_every), "on_policy.samples_every", 0)))
    for key in ("max_new_tokens", "samples_every"):
        if not float(raw.get(key, 0)).is_integer():
            raise InputError(f"'on_policy.{key}' must be an integer, not {raw[key]!r}.")
    return spec if spec.lmbda > 0 else None


def check_teacher_options(teacher_cache: str | None, on_policy: OnPolicySpec | None, losses, seq_length: int) -> None:
    """What the options cannot be combined with, as one sentence each."""
    if teacher_cache:
        other = [s.name for s in losses if s.name not in CACHE_LOSSES]
        if other:
            raise InputError(f"A teacher cache holds only the teacher's top-k log-probabilities: use forward_kl "
                             f"(and ce) with it, not {', '.join(other)}.")
        if on_policy is not None:
            raise InputError("On-policy batches need the live teacher to score what the student writes; "
                             "drop teacher_cache or on_policy.")
    if on_policy is not None and on_policy.max_new_tokens >= seq_length:
        raise InputError(f"'on_policy.max_new_tokens' = {on_policy.max_new_tokens} must be below "
                         f"training.seq_length = {seq_length} (the rest of a block is the prompt).")
