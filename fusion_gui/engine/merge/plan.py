"""Plan a merge: open every input lazily, check everything, and list every output tensor with
its sources, parameters, shape and dtypes, all before any math.

A plan reads only headers, so planning a 70B merge takes a second and catches a missing tensor,
a shape mismatch or a missing parameter before an hour of work is spent.
"""

from __future__ import annotations

import shutil
import zlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import torch

from fusion_gui.engine.inspect.analysis import layer_template
from fusion_gui.engine.merge.chat_template import BUILTIN as BUILTIN_TEMPLATES
from fusion_gui.engine.merge.chat_template import resolve_chat_template
from fusion_gui.engine.errors import InputError
from fusion_gui.engine.methods.fisher_prepare import FisherStore, plan_fisher
from fusion_gui.engine.io.partial import find_partials
from fusion_gui.engine.io.reader import ModelReader, open_model
from fusion_gui.engine.io.writer import parse_size, plan_shards
from fusion_gui.engine.methods import get_method
from fusion_gui.engine.methods.base import SORT_BUDGET, SORT_BYTES, MergeMethod, ParamSpec
from fusion_gui.engine.merge.output import refuse_input_overlap
from fusion_gui.engine.merge.recipe import Recipe, iter_parameter_names, resolve
from fusion_gui.engine.merge.vocab import Vocabulary, plan_vocabulary, tokenizer_folder, tokenizer_settings
from fusion_gui.events import PlanSummary

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64}
_PRE_KEYS = ("embed", "wte", "wpe", "word_embeddings", "position_embeddings", "token_type",
             "patch_embed", "conv_in", "time_embed", "cls_token")
PREFETCH = 2  # tensors read ahead of the one being computed


@dataclass(frozen=True)
class MergeOptions:
    device: str = "auto"  # auto | cpu | cuda | mps
    out_shard_size: str | int = "5GB"
    seed: int | None = None  # overrides the recipe's random_seed
    force: bool = False  # replace an existing OUT_DIR
    async_io: bool = True  # overlap reading, computing and writing


@dataclass
class Source:
    model: str  # model reference as written in the recipe
    tensor: str  # tensor name inside that model
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TensorTask:
    name: str
    sources: list[Source]
    base_index: int | None
    params: dict[str, Any]
    shape: tuple[int, ...]
    compute_dtype: torch.dtype
    out_dtype: torch.dtype
    floating: bool
    seed: int | None
    permute_vocab: bool = False  # a vocabulary tensor, re-indexed to the output tokenizer on loading
    vocab_base: str | None = None  # the base model of mergekit's fill rules for it

    @property
    def out_bytes(self) -> int:
        numel = 1
        for d in self.shape:
            numel *= d
        return numel * self.out_dtype.itemsize


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
    summary: PlanSummary
    warnings: list[str]
    vocabulary: Vocabulary | None = None  # set when the recipe asks for a tokenizer source
    fishers: dict[str, FisherStore] = field(default_factory=dict)  # per model, for Fisher-weighted methods
    chat_template: str | None = None  # the Jinja template the output tokenizer gets, from the recipe

    def close(self) -> None:
        for store in self.fishers.values():
            store.close()
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


def _count_layers(reader: ModelReader) -> int:
    layers = [layer_template(n)[0] for n in reader.tensors]
    return max((x for x in layers if x is not None), default=-1) + 1


def _layer_names(reader: ModelReader) -> tuple[dict[int, list[str]], list[str], list[str]]:
    """(templates per layer, tensors before the layers, tensors after them), in file order."""
    per_layer: dict[int, list[str]] = {}
    pre, post = [], []
    for name in reader.tensors:
        layer, template = layer_template(name)
        if layer is not None:
            per_layer.setdefault(layer, []).append(template)
        elif any(k in name for k in _PRE_KEYS):
            pre.append(name)
        else:
            post.append(name)
    return per_layer, pre, post


def _union(lists) -> list[str]:
    """Every name in any list, first appearance first."""
    return list(dict.fromkeys(name for names in lists for name in names))


def _seed_for(seed: int, name: str) -> int:
    """One seed per tensor, so a random method gives the same tensor whatever the order."""
    return (seed * 1_000_003 + zlib.crc32(name.encode())) % (2**63 - 1)


class _Planner:
    def __init__(self, recipe: Recipe, out_dir: Path, options: MergeOptions):
        self.recipe, self.out_dir, self.options = recipe, out_dir, options
        self.method = get_method(recipe.merge_method)
        self.warnings: list[str] = []
        self.readers: dict[str, ModelReader] = {}
        self.seed = options.seed if options.seed is not None else (recipe.random_seed or 0)
        self.vocabulary: Vocabulary | None = None

    def open_all(self) -> None:
        for ref in self.recipe.referenced_models():
            self.readers[ref] = open_model(ref)
        archs = {ref: _architecture(r) for ref, r in self.readers.items() if _architecture(r)}
        if len(set(archs.values())) > 1:
            described = ", ".join(f"'{self.readers[r].label}' is {a}" for r, a in archs.items())
            raise InputError(f"The models are different architectures: {described}.")

    def slices(self) -> list[tuple[list[tuple[str, tuple[int, int], dict | None]], str | None, dict | None]]:
        """The recipe as output slices: (sources, base model, slice parameters)."""
        r = self.recipe
        if r.models is not None:
            sources = []
            for entry in r.models:
                n = _count_layers(self.readers[entry.model])
                sources.append((entry.model, (0, n), entry.parameters))
            if r.base_model and r.base_model not in [s[0] for s in sources]:
                sources.append((r.base_model, (0, _count_layers(self.readers[r.base_model])), None))
            lengths = {s[1][1] for s in sources}
            if len(lengths) > 1:
                counts = ", ".join(f"'{self.readers[s[0]].label}' has {s[1][1]}" for s in sources)
                raise InputError(f"The models have different numbers of layers: {counts}.")
            return [(sources, r.base_model, None)]
        out = []
        for i, s in enumerate(r.slices or []):
            sources = [(src.model, src.layer_range, src.parameters) for src in s.sources]
            for src_model, (start, end), _ in sources:
                n = _count_layers(self.readers[src_model])
                if end > n:
                    raise InputError(f"slices[{i}] asks for layers {start}-{end} of "
                                     f"'{self.readers[src_model].label}', which has {n} layers.")
            out.append((sources, s.base_model or r.base_model, s.parameters))
        return out

    def check_method_inputs(self, sources: list, base: str | None, where: str) -> int | None:
        m = self.method
        models = [s[0] for s in sources]
        base_index = models.index(base) if base in models else None
        if m.base == "required" and base_index is None:
            if base is None:
                raise InputError(f"The {m.name} method needs a base_model.")
            raise InputError(f"The base model '{base}' is not among the sources of {where}.")
        if len(models) < m.min_models:
            raise InputError(f"The {m.name} method needs at least {m.min_models} models{where and ' in ' + where}, "
                             f"got {len(models)}.")
        if m.max_models is not None and len(models) > m.max_models:
            raise InputError(f"The {m.name} method takes at most {m.max_models} model"
                             f"{'s' if m.max_models > 1 else ''}, got {len(models)} ({', '.join(models)}).")
        return base_index if m.base != "none" else None

    def resolve_param(self, spec: ParamSpec, scopes: list, tensor: str, t: float, who: str) -> Any:
        value = resolve(scopes, spec.name, tensor, t)
        where = f" for {who}" if spec.per_tensor else ""  # one value for the merge: no tensor to name
        if value is None:
            if spec.required:
                raise InputError(f"The {self.method.name} method needs parameter '{spec.name}'"
                                 f"{where}, and the recipe does not set it.")
            return spec.default
        try:
            return spec.validate(value)
        except ValueError as err:
            raise InputError(f"{err}{f' ({where.strip()})' if where else ''}.") from None

    def task(self, out_name: str, sources: list, in_names: list[str], base: str | None,
             slice_params: dict | None, t: float) -> TensorTask:
        infos = []
        for (model, _, _), in_name in zip(sources, in_names):
            info = self.readers[model].tensors.get(in_name)
            if info is None:
                raise InputError(f"Model '{self.readers[model].label}' has no tensor '{in_name}' "
                                 f"(needed for output tensor '{out_name}').")
            infos.append(info)
        first = infos[0]
        vocab = self.vocab_tensor(out_name, sources, infos)
        for (model, _, _), info in zip(sources[1:], infos[1:]):
            if (info.shape[1:] != first.shape[1:]) if vocab else (info.shape != first.shape):
                raise InputError(
                    f"Shape mismatch for tensor '{out_name}': '{self.readers[sources[0][0]].label}' has "
                    f"{list(first.shape)}, '{self.readers[model].label}' has {list(info.shape)}.")
        floating = all(i.dtype.is_floating_point for i in infos)
        base_index = self.check_method_inputs(sources, base, "the recipe") if floating else None
        global_scopes = [slice_params, self.recipe.parameters]
        params = {p.name: self.resolve_param(p, global_scopes, out_name, t, f"tensor '{out_name}'")
                  for p in self.method.global_params} if floating else {}
        srcs = []
        for k, ((model, _, model_params), info) in enumerate(zip(sources, infos)):
            per = {}
            if floating:
                for p in self.method.model_params:
                    if k == base_index and not p.applies_to_base:
                        continue
                    per[p.name] = self.resolve_param(p, [model_params, slice_params, self.recipe.parameters],
                                                     info.name, t, f"model '{model}'")
            srcs.append(Source(model, info.name, per))
        in_dtype = first.dtype
        for info in infos[1:]:
            in_dtype = torch.promote_types(in_dtype, info.dtype)
        r = self.recipe
        compute = DTYPES[r.dtype] if r.dtype else in_dtype
        out = DTYPES[r.out_dtype] if r.out_dtype else compute
        if not floating:
            compute = out = first.dtype
        shape = (self.vocabulary.rows, *first.shape[1:]) if vocab else first.shape
        if vocab:
            self.vocabulary.fill([s[0] for s in sources], base)  # checks the `tokens:` settings now
        return TensorTask(out_name, srcs, base_index, params, shape, compute, out, floating,
                          _seed_for(self.seed, out_name) if self.method.random else None,
                          permute_vocab=vocab, vocab_base=base if vocab else None)

    def vocab_tensor(self, out_name: str, sources: list, infos: list) -> bool:
        """Whether this tensor is indexed by token in every source; an error when only in some."""
        if self.vocabulary is None:
            return False
        found = [self.vocabulary.is_vocab_tensor(model, info.name, info.shape, info.dtype)
                 for (model, _, _), info in zip(sources, infos)]
        if any(found) and not all(found):
            odd = sources[found.index(False)][0]
            raise InputError(f"Tensor '{out_name}' has one row per token in some models but not in "
                             f"'{self.readers[odd].label}', so the vocabularies cannot be aligned.")
        return all(found)

    def plan(self) -> tuple[list[TensorTask], dict[int | None, int], int]:
        slices = self.slices()
        for i, (sources, base, _) in enumerate(slices):
            self.check_method_inputs(sources, base, f"slices[{i}]" if self.recipe.slices else "")
        names = {name for name, _ in iter_parameter_names(self.recipe)}
        unknown = sorted(names - {p.name for p in self.method.params})
        if unknown:
            self.warnings.append(f"The {self.method.name} method ignores parameter"
                                 f"{'s' if len(unknown) > 1 else ''} {', '.join(unknown)}.")
        first_sources, first_base, first_params = slices[0]
        last_sources, last_base, last_params = slices[-1]
        # Union over every source, so a tensor that one model lacks is reported, not dropped.
        pre = _union(_layer_names(self.readers[src[0]])[1] for src in first_sources)
        post = _union(_layer_names(self.readers[src[0]])[2] for src in last_sources)
        tasks, layer_sizes, out_layer = [], {}, 0
        for name in pre:
            tasks.append(self.task(name, first_sources, [name] * len(first_sources), first_base, first_params, 0.0))
        for sources, base, slice_params in slices:
            n = sources[0][1][1] - sources[0][1][0]
            per_layer = [_layer_names(self.readers[src[0]])[0] for src in sources]
            for offset in range(n):
                t = offset / (n - 1) if n > 1 else 1.0
                templates = _union(layers.get(src[1][0] + offset, []) for layers, src in zip(per_layer, sources))
                for template in templates:
                    in_names = [template.format(src[1][0] + offset) for src in sources]
                    tasks.append(self.task(template.format(out_layer), sources, in_names, base, slice_params, t))
                    layer_sizes[out_layer] = layer_sizes.get(out_layer, 0) + 1
                out_layer += 1
        for name in post:
            tasks.append(self.task(name, last_sources, [name] * len(last_sources), last_base, last_params, 0.0))
        outside = len(pre) + len(post)
        if outside:
            layer_sizes[None] = outside
        return tasks, layer_sizes, out_layer


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


def plan_merge(recipe: Recipe, out_dir: str | Path, options: MergeOptions = MergeOptions()) -> MergePlan:
    """Check everything a merge needs and describe its output; reads no tensor data."""
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
    planner = _Planner(recipe, out_dir, options)
    donor = recipe.base_model or recipe.referenced_models()[0]
    tok = recipe.tokenizer_source or (recipe.tokenizer or {}).get("source")
    tok_donor = donor if tok in (None, "base", "union") else tok
    try:
        planner.open_all()
        if tok_donor not in planner.readers:
            planner.readers[tok_donor] = open_model(tok_donor)
        refuse_input_overlap(out_dir, {r.label: r.path for r in planner.readers.values()})
        planner.vocabulary = plan_vocabulary(recipe, planner.readers)
        chat_template, template_warnings = resolve_chat_template(
            recipe.chat_template, [planner.readers[m] for m in recipe.referenced_models()])
        if chat_template and planner.vocabulary is None and tokenizer_folder(planner.readers[tok_donor]) is None:
            template_warnings.append(f"chat_template is set, but '{planner.readers[tok_donor].label}' has no "
                                     f"tokenizer to carry it; the output gets none.")
        planner.warnings += template_warnings
        tasks, layer_sizes, out_layers = planner.plan()
        fisher = (plan_fisher(planner.readers, tasks, tok_donor, planner.vocabulary)
                  if planner.method.needs_fisher else None)
        if device.type == "cuda":  # the math runs on the GPU in float32
            for task in tasks:
                if task.floating and task.compute_dtype != torch.float64:
                    task.compute_dtype = torch.float32
    except BaseException:
        for reader in planner.readers.values():
            reader.close()
        raise
    shards = plan_shards([(t.name, t.shape, t.out_dtype) for t in tasks], shard_bytes)
    output_bytes = sum(t.out_bytes for t in tasks)
    largest = max(tasks, key=lambda t: t.out_bytes)
    n_inputs = max(len(t.sources) for t in tasks)
    big = largest.out_bytes // largest.out_dtype.itemsize * 4  # float32 working copies
    # inputs in flight (prefetch + current), the method's scratch, and the write queue
    peak = psutil.Process().memory_info().rss + big * (n_inputs * (PREFETCH + 1) + 4) + largest.out_bytes * 3
    if planner.method.sign_election:  # every model's delta in one buffer for the vote; its masks and sums
        peak += big * (n_inputs + 2)
    if planner.method.ranks_by_magnitude:  # sorts side by side within one sort of the largest tensor
        peak += (sort_budget := big // 4 * SORT_BYTES)
        for task in (t for t in tasks if t.floating):
            task.params[SORT_BUDGET] = sort_budget
    if fisher:  # each input's Fisher travels with it; the estimation runs before the merge
        peak = max(peak + big * n_inputs * (PREFETCH + 1), psutil.Process().memory_info().rss + fisher.peak_bytes)
    free_disk = shutil.disk_usage(out_dir.parent).free
    warnings = list(planner.warnings) + (list(fisher.warnings) if fisher else [])
    if output_bytes > free_disk:
        warnings.append(f"The output needs {output_bytes / 1e9:.1f} GB but only {free_disk / 1e9:.1f} GB "
                        f"is free in {out_dir.parent}.")
    method = planner.method
    out_dtypes = sorted({str(t.out_dtype).replace("torch.", "") for t in tasks if t.floating})
    summary = PlanSummary(
        method=method.name, models=tuple(planner.readers[m].label for m in recipe.referenced_models()),
        base_model=planner.readers[recipe.base_model].label if recipe.base_model else None,
        out_dir=str(out_dir), tensors=len(tasks), output_bytes=output_bytes, shards=len(shards),
        out_dtype="/".join(out_dtypes) or "-", device=str(device), num_layers=out_layers,
        estimated_peak_bytes=int(peak), largest_tensor=largest.name, warnings=tuple(warnings),
        notes=_tokenizer_notes(recipe, planner.vocabulary, tasks, chat_template) + (fisher.notes if fisher else ()),
        partial_folders=find_partials(out_dir.parent))
    return MergePlan(recipe, method, out_dir, options, planner.readers, tasks, device, donor, tok_donor,
                     out_layers, layer_sizes, shard_bytes, summary, warnings, planner.vocabulary,
                     chat_template=chat_template)
