"""The Merge tab's pre-flight: what plan_merge (headers only) says a merge will write and need,
the warnings beside it (memory, an output folder that exists or is one of the inputs), run on a
worker by the Run view. No Qt here: plain text that the view formats."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import psutil

from fusion_gui.events import PlanSummary
from fusion_gui.session.output_folder import folder_bytes, fresh_folder
from fusion_gui.formatting import format_bytes


def preflight_job(recipe, out_dir: str, options, output_chosen: bool, token, hub_refs=(), allow_downloads=False):
    """Plan the merge (headers only) on the worker: (summary, text, warnings, fresh folder or None).
    The app decides about an existing folder itself (it asks), so the plan never refuses one.
    Hub models not downloaded yet: (None, what Run fetches first, problems, None), or InputError."""
    from fusion_gui.engine.merge import plan_merge
    from fusion_gui.ui.hub.merge_models import hub_models_plan

    yield from ()
    pending = hub_models_plan(list(hub_refs), allow_downloads)
    if pending is not None:
        return None, *pending, None
    plan = plan_merge(recipe, out_dir, dataclasses.replace(options, force=True), preview=True)
    try:
        text, warnings = describe_plan(plan.summary, output_chosen)
    finally:
        plan.close()
    fresh = None
    if output_chosen and Path(out_dir).expanduser().exists():
        note, fresh = existing_output_note(out_dir, options.force)
        warnings.append(note)
    return plan.summary, text, warnings, fresh


def existing_output_note(out_dir: str, replace: bool) -> tuple[str, str | None]:
    """What the pre-flight says about an output folder that exists, and a fresh name to offer."""
    fresh = str(fresh_folder(out_dir))  # an input in the way never gets here: plan_merge refuses it
    size = format_bytes(folder_bytes(out_dir))
    if replace:
        return f"'{out_dir}' already exists ({size}); Run asks before replacing it.", None
    return f"'{out_dir}' already exists ({size}); choose a new one:", fresh


def free_memory(device: str) -> tuple[int, int | None]:
    """(free RAM, free GPU memory or None) in bytes."""
    ram = psutil.virtual_memory().available
    gpu = None
    if device.startswith("cuda"):
        try:
            import torch

            if torch.cuda.is_available():
                gpu = torch.cuda.mem_get_info()[0]
        except Exception:  # no usable CUDA: the RAM figure is what counts
            gpu = None
    return ram, gpu


def describe_plan(summary: PlanSummary, output_chosen: bool = True) -> tuple[str, list[str]]:
    """The pre-flight text and the warnings to show beside it."""
    text = (f"Writes {summary.tensors} tensors ({format_bytes(summary.output_bytes)}, {summary.out_dtype}) "
            f"in {summary.shards} shard{'s' if summary.shards != 1 else ''}, {summary.num_layers} layers, "
            f"on {summary.device}. Estimated peak memory {format_bytes(summary.estimated_peak_bytes)}.")
    for note in summary.notes:  # work before the merge proper, e.g. estimating Fishers
        text += f"\n{note}"
    warnings = list(summary.warnings)
    ram, gpu = free_memory(summary.device)
    if summary.estimated_peak_bytes > ram:
        warnings.append(f"The estimated peak memory is more than the {format_bytes(ram)} of free RAM.")
    if gpu is not None and summary.estimated_peak_bytes > gpu:
        warnings.append(f"The estimated peak memory is more than the {format_bytes(gpu)} of free GPU memory.")
    if not output_chosen:
        warnings.append("Choose an output folder.")
    return text, warnings
