"""Evaluation results as people read them: the models x metrics grid, its cells, CSV and completions.
Qt-free, so the command line and the Evaluate panel show the same numbers."""

from __future__ import annotations

import csv
from pathlib import Path

from fusion_gui.events import EvalRow, Generation


def table(rows: tuple[EvalRow, ...]) -> tuple[list[str], list[str], dict[tuple[str, str], EvalRow]]:
    """(models, metrics, cells) in first-seen order: the models x metrics grid the CLI and app show."""
    models = list(dict.fromkeys(r.model for r in rows))
    metrics = list(dict.fromkeys(r.metric for r in rows))
    return models, metrics, {(r.model, r.metric): r for r in rows}


def is_perplexity(metric: str) -> bool:
    return metric == "perplexity" or metric.endswith("/perplexity")


def format_value(row: EvalRow | None) -> str:
    if row is None:
        return "-"
    if is_perplexity(row.metric):
        return f"{row.value:.2f}"
    return f"{100 * row.value:.1f}%" if "/" in row.metric else f"{100 * row.value:.0f}%"


def format_table(rows: tuple[EvalRow, ...]) -> str:
    models, metrics, cells = table(rows)
    # a demo skill's name alone means its exact match; task metrics are named "<task>/<metric>"
    header = ["model"] + [m if is_perplexity(m) or "/" in m else f"{m} (exact match)" for m in metrics]
    body = [[m] + [format_value(cells.get((m, k))) for k in metrics] for m in models]
    widths = [max(len(r[i]) for r in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header] + body]
    return "\n".join([lines[0], "-" * len(lines[0])] + lines[1:])


def write_csv(rows: tuple[EvalRow, ...], path: str | Path) -> None:
    """One line per model, one column per metric (raw values: accuracy 0..1), plus the counts."""
    models, metrics, cells = table(rows)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["model"] + metrics + [f"{m}_n" for m in metrics])
        for m in models:
            got = [cells.get((m, k)) for k in metrics]
            w.writerow([m] + ["" if r is None else repr(r.value) for r in got]
                       + ["" if r is None else r.n for r in got])


def format_generations(gens: tuple[Generation, ...]) -> str:
    return "\n".join(f"[{g.model}, {g.mode}] {g.prompt}{g.text}" for g in gens)


def confidence_interval(row: EvalRow, z: float = 1.96) -> tuple[float, float] | None:
    """The 95% Wilson interval of an accuracy from its number of examples (None for a perplexity,
    whose spread the example count does not give)."""
    if is_perplexity(row.metric) or row.n <= 0:
        return None
    p, n = min(max(row.value, 0.0), 1.0), row.n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * ((p * (1 - p) / n + z * z / (4 * n * n)) ** 0.5) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)
