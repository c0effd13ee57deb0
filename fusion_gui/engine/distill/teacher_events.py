"""Events of the offline teacher and on-policy distillation (plain numbers and strings, no torch)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class CaptureResult:
    """A teacher cache written (or found already written) by the capture job."""

    cache_dir: str
    blocks: int
    top_k: int
    bytes_written: int
    seconds: float
    reused: bool = False  # the same teacher, data and settings were captured before: nothing was run


@dataclass(frozen=True)
class StudentSample:
    """One completion the student generated during on-policy training, each token with the teacher's
    log-probability of it (the view colours tokens by it)."""

    step: int
    prompt: str
    tokens: tuple[str, ...]
    teacher_log_probs: tuple[float, ...]
