"""Scores side by side for the Evaluate view's charts and table: one value per (model, score) with
its confidence interval, and each model's delta against the best input. Qt-free.

The first model is the one being judged (the merge, as the Merge tab hands it over); the others are
its inputs (base included). Perplexity is lower-is-better and has no interval from a count.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from fusion_gui.engine.evaluate.report import confidence_interval, is_perplexity, table
from fusion_gui.events import EvalRow


@dataclass(frozen=True)
class Comparison:
    models: list[str]
    metrics: list[str]  # "<task>/<metric>" (or a demo skill / "perplexity")
    cells: dict[tuple[str, str], EvalRow]

    def value(self, model: str, metric: str) -> float | None:
        row = self.cells.get((model, metric))
        return row.value if row is not None else None

    def interval(self, model: str, metric: str) -> tuple[float, float] | None:
        row = self.cells.get((model, metric))
        return confidence_interval(row) if row is not None else None

    def best_input(self, metric: str) -> float | None:
        """The best value among the inputs (every model but the first); lower for a perplexity."""
        values = [v for m in self.models[1:] if (v := self.value(m, metric)) is not None]
        if not values:
            return None
        return min(values) if is_perplexity(metric) else max(values)

    def delta(self, model: str, metric: str) -> float | None:
        """model minus the best input (None for the inputs themselves, or when either is missing)."""
        value, best = self.value(model, metric), self.best_input(metric)
        if model not in self.models[:1] or value is None or best is None:
            return None
        return value - best

    def chart_metrics(self) -> list[str]:
        """The scores a bar or radar chart shows: accuracies (0..1), not perplexities."""
        return [m for m in self.metrics if not is_perplexity(m)]

    def write_csv(self, path: str | Path) -> Path:
        """One line per (model, score): value, interval, n, delta against the best input."""
        path = Path(path)
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f)
            writer.writerow(["model", "score", "value", "low", "high", "n", "delta_vs_best_input"])
            for model in self.models:
                for metric in self.metrics:
                    row = self.cells.get((model, metric))
                    if row is None:
                        continue
                    low, high = self.interval(model, metric) or ("", "")
                    delta = self.delta(model, metric)
                    writer.writerow([model, metric, repr(row.value), low, high, row.n,
                                     "" if delta is None else repr(delta)])
        return path


def compare(rows: tuple[EvalRow, ...]) -> Comparison:
    models, metrics, cells = table(tuple(rows))
    return Comparison(models, metrics, cells)
