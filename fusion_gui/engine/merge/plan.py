"""Plan a merge: open every input lazily, check everything, and describe the output (tensors,
memory, disk, tokenizer, the method's prepare step), all before any math.

A plan reads only headers, so planning a 70B merge takes a second and catches a missing tensor,
a shape mismatch or a missing parameter before an hour of work is spent. The tensor-by-tensor
listing is merge/tasks.py.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.io.opener import open_model
from fusion_gui.engine.io.partial import find_partials
from fusion_gui.engine.io.reader import ModelReader
from fusion_gui.engine.io.writer import parse_size, plan_shards
from fusion_gui.engine.merge.chat_template import BUILTIN as BUILTIN_TEMPLATES
from fusion_gui.engine.merge.chat_template import resolve_chat_template
from fusion_gui.engine.merge.recipe import Recipe
from fusion_gui.engine.merge.memory import peak_with, side_by_side_widths, task_memory
from fusion_gui.engine.merge.tasks import TaskPlanner, TensorTask
from fusion_gui.engine.merge.model_tokenizer import tokenizer_folder
from fusion_gui.engine.merge.vocab import Vocabulary, plan_vocabulary, tokenizer_settings
from fusion_gui.engine.methods import get_method
from fusion_gui.engine.methods.base import MergeMethod, PrepareEstimate, Prepared
from fusion_gui.engine.merge.output import refuse_input_overlap
from fusion_gui.events import PlanSummary

PREFETCH = 2  # tensors read ahead of the one being computed
_POOL_WORKERS = max(2, os.cpu_count() or 2)  # threads a method may run models' work on (task_arithmetic's)


@dataclass(frozen=True)
class MergeOptions:
    device: str = "auto"  # auto | cpu | cuda | mps
    out_shard_size: str | int = "5GB"
    seed: int | None = None  # overrides the recipe's random_seed
    force: bool = False  # replace an existing OUT_DIR
    async_io: bool = True  # overlap reading, computing and writing
    smoke: bool = True  # smoke-check the output before it appears (evaluate/smoke.py)
    # Memory the merge may use, in bytes; more lets TIES-like methods sort several models' changes side
    # by side on big tensors too. None: what the merge needs with one at a time (the estimate).
    memory_budget: int | None = None


@dataclass
class MergePlan:
    recipe: Recipe
    method: MergeMethod
    out_dir: Path
    options: MergeOptions
    readers: dict[str, ModelReader]
    tasks: list[TensorTask]
    device: torch.device
    config_donor: str
    tokenizer_donor: str
    out_layers: int
    layer_sizes: dict[int | None, int]  # output tensors per output layer
    shard_bytes: int
    summary: PlanSummary | None  # None only while plan_merge builds it
    warnings: list[str]
    vocabulary: Vocabulary | None = None  # set when the recipe asks for a tokenizer source
    chat_template: str | None = None  # the Jinja template the output tokenizer gets, from the recipe
    prepared: Prepared | None = None  # what the method's prepare step returned, once the merge ran it
    side_by_side: list[int] | None = None  # per task: models' work run at once, within the memory budget

    def close(self) -> None:
        if self.prepared is not None:
            self.prepared.close()
        for reader in self.readers.values():
            reader.close()


def pick_device(name: str) -> torch.device:
    name = (name or "auto").lower()
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda was asked for, but torch sees no CUDA GPU here.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError("--device mps was asked for, but this machine has no MPS device.")
    if name not in ("cpu", "cuda", "mps"):
        raise InputError(f"Unknown device '{name}'; use auto, cpu, cuda or mps.")
    return torch.device(name)


def _architecture(reader: ModelReader) -> str | None:
    cfg = reader.config or {}
    arch = cfg.get("architectures")
    return ",".join(arch) if arch else cfg.get("model_type")


def _open_all(recipe: Recipe, readers: dict[str, ModelReader]) -> None:
    """Open every model the recipe names into `readers` (the caller closes them on failure)."""
    for ref in recipe.referenced_models():
        readers[ref] = open_model(ref)
    archs = {ref: _architecture(r) for ref, r in readers.items() if _architecture(r)}
    if len(set(archs.values())) > 1:
        described = ", ".join(f"'{readers[r].label}' is {a}" for r, a in archs.items())
        raise InputError(f"The models are different architectures: {described}.")


def _tokenizer_notes(recipe: Recipe, vocabulary: Vocabulary | None, tasks: list[TensorTask],
                     chat_template: str | None) -> tuple[str, ...]:
    """What the dry run says about the output tokenizer, when the recipe asks for tokenizer work."""
    notes = []
    if vocabulary is not None:
        source = tokenizer_settings(recipe)[0]
        re_ordered = [t.name for t in tasks if t.permute_vocab]
        notes.append(f"tokenizer: {source}, {vocabulary.size} tokens in {vocabulary.rows} embedding rows; "
                     f"{', '.join(re_ordered) or 'no tensor'} re-ordered into it for every model")
    if chat_template:
        notes.append(f"chat template: {recipe.chat_template}" if recipe.chat_template in BUILTIN_TEMPLATES or
                     recipe.chat_template == "auto" else "chat template: written in the recipe")
    return tuple(notes)


def _cast_bytes(plan: MergePlan) -> list[int]:
    """Per task: an input read in a dtype other than the compute dtype, held while it is cast."""
    sizes = []
    for task in plan.tasks:
        infos = [plan.readers[s.model].tensors[s.tensor] for s in task.sources]
        sizes.append(max((i.nbytes for i in infos if i.dtype != task.compute_dtype), default=0))
    return sizes


def _plan_memory(plan: MergePlan, estimate: PrepareEstimate) -> int:
    """The job's own peak memory, from what the loop holds per tensor (merge/memory.py), and how many
    models' work each tensor runs side by side (plan.side_by_side). Side by side only within the budget:
    by default the peak the loop reaches anyway with one at a time, so running side by side never
    raises it."""
    held = task_memory(plan.method, plan.tasks, _cast_bytes(plan), PREFETCH, plan.options.async_io,
                       estimate.copies_per_input)
    one_at_a_time = max(held)
    budget = max(one_at_a_time, plan.options.memory_budget or 0)
    plan.side_by_side = side_by_side_widths(plan.method, plan.tasks, held, budget, _POOL_WORKERS)
    return max(peak_with(plan.method, plan.tasks, held, plan.side_by_side), estimate.peak_bytes)


def _summary(plan: MergePlan, estimate: PrepareEstimate) -> PlanSummary:
    recipe, tasks, out_dir = plan.recipe, plan.tasks, plan.out_dir
    shards = plan_shards([(t.name, t.shape, t.out_dtype) for t in tasks], plan.shard_bytes)
    output_bytes = sum(t.out_bytes for t in tasks)
    free_disk = shutil.disk_usage(out_dir.parent).free
    if output_bytes > free_disk:
        plan.warnings.append(f"The output needs {output_bytes / 1e9:.1f} GB but only {free_disk / 1e9:.1f} GB "
                             f"is free in {out_dir.parent}.")
    out_dtypes = sorted({str(t.out_dtype).replace("torch.", "") for t in tasks if t.floating})
    return PlanSummary(
        method=plan.method.name, models=tuple(plan.readers[m].label for m in recipe.referenced_models()),
        base_model=plan.readers[recipe.base_model].label if recipe.base_model else None,
        out_dir=str(out_dir), tensors=len(tasks), output_bytes=output_bytes, shards=len(shards),
        out_dtype="/".join(out_dtypes) or "-", device=str(plan.device), num_layers=plan.out_layers,
        estimated_peak_bytes=_plan_memory(plan, estimate),
        largest_tensor=max(tasks, key=lambda t: t.out_bytes).name, warnings=tuple(plan.warnings),
        notes=_tokenizer_notes(recipe, plan.vocabulary, tasks, plan.chat_template) + estimate.notes,
        partial_folders=find_partials(out_dir.parent))


def plan_merge(recipe: Recipe, out_dir: str | Path, options: MergeOptions = MergeOptions(),
               preview: bool = False) -> MergePlan:
    """Check everything a merge needs and describe its output; reads no tensor data.
    preview: only the description is wanted (the app's pre-flight): an unchanged vocabulary is reused."""
    out_dir = Path(out_dir).expanduser().absolute()
    if out_dir.exists() and not options.force:
        raise InputError(f"Output folder '{out_dir}' already exists; choose another or pass --force.")
    if not out_dir.parent.exists():
        raise InputError(f"The folder '{out_dir.parent}' for the output does not exist.")
    try:
        shard_bytes = parse_size(options.out_shard_size)
    except ValueError as err:
        raise InputError(f"Bad --out-shard-size: {err}") from None
    device = pick_device(options.device)
    method = get_method(recipe.merge_method)
    if not recipe.referenced_models():
        raise InputError("The recipe names no models to merge; add two or more.")
    donor = recipe.base_model or recipe.referenced_models()[0]
    tok = recipe.tokenizer_source or (recipe.tokenizer or {}).get("source")
    tok_donor = donor if tok in (None, "base", "union") else tok
    readers: dict[str, ModelReader] = {}
    try:
        _open_all(recipe, readers)
        if tok_donor not in readers:
            readers[tok_donor] = open_model(tok_donor)
        refuse_input_overlap(out_dir, {r.label: r.path for r in readers.values()})
        vocabulary = plan_vocabulary(recipe, readers, preview)
        chat_template, warnings = resolve_chat_template(
            recipe.chat_template, [readers[m] for m in recipe.referenced_models()])
        if chat_template and vocabulary is None and tokenizer_folder(readers[tok_donor]) is None:
            warnings.append(f"chat_template is set, but '{readers[tok_donor].label}' has no "
                            f"tokenizer to carry it; the output gets none.")
        seed = options.seed if options.seed is not None else (recipe.random_seed or 0)
        planner = TaskPlanner(recipe, method, readers, vocabulary, seed)
        tasks, layer_sizes, out_layers = planner.plan()
        if device.type == "cuda":  # the math runs on the GPU in float32
            for task in tasks:
                if task.floating and task.compute_dtype != torch.float64:
                    task.compute_dtype = torch.float32
        plan = MergePlan(recipe, method, out_dir, options, readers, tasks, device, donor, tok_donor,
                         out_layers, layer_sizes, shard_bytes, None, warnings + planner.warnings,
                         vocabulary, chat_template)
        estimate = method.prepare.check(plan) if method.prepare else PrepareEstimate()
    except BaseException:
        for reader in readers.values():
            reader.close()
        raise
    plan.warnings += estimate.warnings
    plan.summary = _summary(plan, estimate)
    return plan
