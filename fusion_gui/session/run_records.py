"""What each kind of run puts into the history: one function per kind, called by the CLI and the app
when a job ends (finished, failed or cancelled). Recording never fails a run: a history problem
is returned as a sentence instead."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Iterable
from dataclasses import asdict
from pathlib import Path

from fusion_gui.events import DistillResult, EvalRow, MergeResult, SmokeVerdict
from fusion_gui.session.eval_cache import row_to_score
from fusion_gui.session.history import History, InputFile


def history_enabled() -> bool:
    """FUSION_GUI_HISTORY=0 turns recording off (FUSION_GUI_DATA_DIR moves it instead)."""
    return os.environ.get("FUSION_GUI_HISTORY", "1").lower() not in ("0", "false", "no", "off")


def open_history() -> History | None:
    return History() if history_enabled() else None


def _inputs(history: History, refs: Iterable[tuple[str, str]]) -> list[InputFile]:
    """InputFiles with content hashes of the inputs that are local (a Hub id not yet resolved keeps none)."""
    files = []
    for role, ref in refs:
        path = Path(ref).expanduser()
        digest = ""
        if path.exists():
            try:
                digest = history.model_hash(path)
            except OSError:
                pass
        files.append(InputFile(str(path.resolve()) if path.exists() else str(ref), role, digest))
    return files


def _smoke(verdict: SmokeVerdict | None) -> dict:
    return {"smoke": asdict(verdict)} if verdict is not None else {}


def record_merge(history: History, recipe_text: str, models: Iterable[str], base: str | None, out_dir: str,
                 result: MergeResult | None, status: str = "done", seconds: float | None = None) -> int | None:
    """A merge: the recipe, inputs (the base marked), output, timings, peak memory, per-layer metrics."""
    def run() -> int:
        roles = [("base" if base is not None and m == base else "input", m) for m in models]
        details = _smoke(result.smoke if result else None)
        if result is not None:
            details["layer_metrics"] = [asdict(m) for m in result.layer_metrics]
        return history.record(
            "merge", title=Path(out_dir).name, recipe=recipe_text, inputs=_inputs(history, roles), output=out_dir,
            seconds=result.seconds if result else seconds, peak_bytes=result.peak_bytes if result else None,
            verdict=result.smoke.verdict if result and result.smoke else None, status=status, details=details)
    return _safely(run)


def record_distill(history: History, config_text: str, teacher: str, student: str, out_dir: str,
                   result: DistillResult | None, status: str = "done", seconds: float | None = None,
                   peak_bytes: int | None = None) -> int | None:
    def run() -> int:
        details = _smoke(result.smoke if result else None)
        if result is not None:
            details["final_eval"] = result.final_eval
        return history.record(
            "distill", title=Path(out_dir).name, recipe=config_text,
            inputs=_inputs(history, [("teacher", teacher), ("student", student)]), output=out_dir,
            seconds=result.seconds if result else seconds, peak_bytes=peak_bytes, status=status,
            verdict=result.smoke.verdict if result and result.smoke else None, details=details)
    return _safely(run)


def record_eval(history: History, models: Iterable[str], tasks: Iterable[str], rows: Iterable[EvalRow],
                status: str = "done", seconds: float | None = None, peak_bytes: int | None = None,
                hashes: dict[str, str] | None = None) -> int | None:
    """An evaluation: the models, the tasks (as the recipe text), every score.
    hashes maps a row's model label to its content hash, when known."""
    def run() -> int:
        models_ = list(models)
        scores = [row_to_score(r, (hashes or {}).get(r.model, "")) for r in rows]
        return history.record(
            "eval", title=", ".join(Path(m).name for m in models_), recipe="\n".join(tasks),
            inputs=_inputs(history, [("model", m) for m in models_]), scores=scores, seconds=seconds,
            peak_bytes=peak_bytes, status=status)
    return _safely(run)


def _safely(run) -> int | None:
    try:
        return run()
    except (sqlite3.Error, OSError):
        return None
