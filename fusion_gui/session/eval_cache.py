"""Evaluation through the score cache: an unchanged model on an unchanged task is answered from the
history at once; a fresh evaluation is cached only when it finished (a cancelled or failed one
leaves nothing behind)."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

from fusion_gui.events import Event, EvalRow, Log
from fusion_gui.session.history import History, Score


def row_to_score(row: EvalRow, model_hash: str = "", task_hash: str = "") -> Score:
    task, _, metric = row.metric.rpartition("/")
    return Score(row.model, task, metric, row.value, row.n, model_hash, task_hash)


def score_to_row(score: Score, label: str | None = None) -> EvalRow:
    return EvalRow(label or score.model, f"{score.task}/{score.metric}" if score.task else score.metric,
                   score.value, score.n)


def evaluate_cached(history: History, model_path: str | Path, task_hash: str, job, label: str
                    ) -> Generator[Event, None, tuple[EvalRow, ...]]:
    """Generator: the cached rows for (model content, task), or the job's rows, cached once it completes.
    `job` is a zero-argument callable returning the evaluation generator (not started when cached)."""
    model_hash = history.model_hash(model_path)
    cached = history.cached_scores(model_hash, task_hash)
    if cached:
        yield Log(f"{label}: unchanged since it was last scored on this task; scores from the history.")
        rows = tuple(score_to_row(s, label) for s in cached)
        for row in rows:
            yield row
        return rows
    rows = tuple((yield from job()))
    history.store_scores(model_hash, task_hash, [row_to_score(r) for r in rows])
    return rows
