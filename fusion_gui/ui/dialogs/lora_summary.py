"""What the Extract LoRA dialog says about a result: the numbers in a sentence, the rank, the fit."""

from __future__ import annotations

from fusion_gui.events import LoraResult
from fusion_gui.ui.panels.models_panel import describe_model, incompatibility

ERROR_COLOUR = "#b3261e"
FAR_TOO_LOW = 0.5  # a mean relative error from here on: the adapter misses most of the change


def format_error(value: float) -> str:
    """A relative error as people read it: 0.1234, 0.0005, 3.1e-07."""
    return f"{value:.4g}"


def summary_text(result: LoraResult, warnings: list[str]) -> str:
    """What the extraction gave, in a sentence or two (the numbers the table sorts)."""
    worst = max(result.modules, key=lambda m: m.rel_error)
    ranks = sorted({m.rank for m in result.modules})
    rank = str(ranks[0]) if len(ranks) == 1 else f"{ranks[0]} to {ranks[-1]}"
    lines = [f"{len(result.modules)} modules at rank {rank}. Relative error ‖ΔW − BA‖ / ‖ΔW‖: mean "
             f"{format_error(result.mean_rel_error)}, max {format_error(result.max_rel_error)} "
             f"({worst.name.removesuffix('.weight')})."]
    return "\n".join(lines + warnings)


def rank_advice(result: LoraResult) -> tuple[str, bool]:
    """A line on the rank when it keeps less than 90% of the change ('' when it keeps more), and
    whether the rank is far too low (most of the change is lost)."""
    used = max(m.rank for m in result.modules)
    suggested = result.rank_for_90
    if suggested is not None and suggested <= used:
        return "", False
    far = result.mean_rel_error >= FAR_TOO_LOW
    lost = (f"Rank {used} is far too low for this change: the adapter misses most of it (mean relative error "
            f"{format_error(result.mean_rel_error)}). " if far else f"Rank {used} keeps less than 90% of this change. ")
    if suggested is None:
        return lost + "A much higher rank is needed (the singular values computed do not say which).", far
    return lost + f"Rank {suggested} would keep 90% of the change's energy.", far


def fit_check_job(adapter: str, base: str | None, vocabularies_merged: bool):
    """Generator for a worker: why the adapter cannot join a merge with this base (None: it can)."""
    yield from ()
    if not base:
        return None  # an empty merge: the adapter becomes its first model
    return incompatibility(describe_model(adapter), describe_model(base), vocabularies_merged)
