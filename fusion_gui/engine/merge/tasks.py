"""Every output tensor of a merge as a task: which tensor of which input feeds it, with which
parameter values, in which shape and dtypes. Reads headers only; raises InputError for a missing
tensor, a shape mismatch or a missing parameter before any math.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from typing import Any

import torch

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.io.reader import ModelReader
from fusion_gui.engine.merge.recipe import Recipe, iter_parameter_names
from fusion_gui.engine.merge.settings import resolve
from fusion_gui.engine.merge.vocab import Vocabulary
from fusion_gui.engine.methods.base import MergeMethod, ParamSpec
from fusion_gui.engine.naming import comes_before_layers, count_layers, layer_template

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16,
          "float64": torch.float64}


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


def _layer_names(reader: ModelReader) -> tuple[dict[int, list[str]], list[str], list[str]]:
    """(templates per layer, tensors before the layers, tensors after them), in file order."""
    per_layer: dict[int, list[str]] = {}
    pre, post = [], []
    for name in reader.tensors:
        layer, template = layer_template(name)
        if layer is not None:
            per_layer.setdefault(layer, []).append(template)
        elif comes_before_layers(name):
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


class TaskPlanner:
    """Lists a recipe's output tensors over opened inputs, checking every one as it goes."""

    def __init__(self, recipe: Recipe, method: MergeMethod, readers: dict[str, ModelReader],
                 vocabulary: Vocabulary | None, seed: int):
        self.recipe, self.method, self.readers = recipe, method, readers
        self.vocabulary, self.seed = vocabulary, seed
        self.warnings: list[str] = []

    def slices(self) -> list[tuple[list[tuple[str, tuple[int, int], dict | None]], str | None, dict | None]]:
        """The recipe as output slices: (sources, base model, slice parameters)."""
        r = self.recipe
        if r.models is not None:
            sources = []
            for entry in r.models:
                n = count_layers(self.readers[entry.model].tensors)
                sources.append((entry.model, (0, n), entry.parameters))
            if r.base_model and r.base_model not in [s[0] for s in sources]:
                sources.append((r.base_model, (0, count_layers(self.readers[r.base_model].tensors)), None))
            lengths = {s[1][1] for s in sources}
            if len(lengths) > 1:
                counts = ", ".join(f"'{self.readers[s[0]].label}' has {s[1][1]}" for s in sources)
                raise InputError(f"The models have different numbers of layers: {counts}.")
            return [(sources, r.base_model, None)]
        out = []
        for i, s in enumerate(r.slices or []):
            sources = [(src.model, src.layer_range, src.parameters) for src in s.sources]
            for src_model, (start, end), _ in sources:
                n = count_layers(self.readers[src_model].tensors)
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
