"""History to a file: CSV (one row per score, or per run when it has none) or JSON (every field)."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

from fusion_gui.session.history import RunRecord

COLUMNS = ("id", "kind", "started", "seconds", "status", "title", "output", "peak_bytes", "verdict",
           "model", "task", "metric", "value", "n")


def export_runs(runs: list[RunRecord], path: str | Path) -> Path:
    """Write runs to path; the format follows the suffix (.csv or .json)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        path.write_text(json.dumps([asdict(r) for r in runs], indent=2) + "\n")
        return path
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for run in runs:
            head = [run.id, run.kind, run.started, run.seconds, run.status, run.title, run.output,
                    run.peak_bytes, run.verdict]
            for score in run.scores or [None]:
                tail = [score.model, score.task, score.metric, score.value, score.n] if score else [""] * 5
                writer.writerow(head + tail)
    return path
