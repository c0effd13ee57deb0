"""Parse, validate and dump merge recipes: mergekit's YAML, read as mergekit documents it.

A parameter setting is a scalar, a gradient list (interpolated across layers), a
`{filter, value}` mapping or a list of them (first filter that is a substring of the tensor
name wins); settings.py computes its value for one tensor.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

import yaml

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.merge.settings import Setting
from fusion_gui.engine.parse_text import load_yaml, read_text

TOP_KEYS = {
    "merge_method", "base_model", "models", "slices", "parameters", "dtype", "out_dtype",
    "tokenizer_source", "tokenizer", "chat_template", "random_seed", "name",
}
MODEL_KEYS = {"model", "parameters"}
SOURCE_KEYS = {"model", "layer_range", "parameters"}
SLICE_KEYS = {"sources", "base_model", "parameters", "residual_weight"}
DTYPES = ("float32", "float16", "bfloat16", "float64")
_DTYPE_ALIASES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16", "half": "float16",
                  "float": "float32", "fp64": "float64"}


@dataclass
class ModelEntry:
    model: str
    parameters: dict[str, Setting] | None = None


@dataclass
class SliceSource:
    model: str
    layer_range: tuple[int, int]
    parameters: dict[str, Setting] | None = None


@dataclass
class OutputSlice:
    sources: list[SliceSource]
    base_model: str | None = None
    parameters: dict[str, Setting] | None = None


@dataclass
class Recipe:
    merge_method: str
    base_model: str | None = None
    models: list[ModelEntry] | None = None
    slices: list[OutputSlice] | None = None
    parameters: dict[str, Setting] | None = None
    dtype: str | None = None
    out_dtype: str | None = None
    tokenizer_source: str | None = None
    tokenizer: dict | None = None
    chat_template: str | None = None
    random_seed: int | None = None
    name: str | None = None
    extra: dict = field(default_factory=dict, repr=False)

    def referenced_models(self) -> list[str]:
        """Every model the recipe names, first mention first, each once."""
        return referenced_models(self.models, self.slices, self.base_model)


def referenced_models(models: list[ModelEntry] | None, slices: list[OutputSlice] | None,
                      base_model: str | None) -> list[str]:
    """Models, then slice sources and slice bases, then the base: first mention first, once each."""
    seen: dict[str, None] = {}
    for entry in models or []:
        seen.setdefault(entry.model)
    for out_slice in slices or []:
        for source in out_slice.sources:
            seen.setdefault(source.model)
        if out_slice.base_model:
            seen.setdefault(out_slice.base_model)
    if base_model:
        seen.setdefault(base_model)
    return list(seen)


def _where(context: str) -> str:
    return f" in {context}" if context else ""


def _check_keys(data: Any, allowed: set[str], context: str) -> dict:
    if not isinstance(data, Mapping):
        raise InputError(f"Expected a mapping{_where(context)}, found {type(data).__name__}.")
    unknown = sorted(set(map(str, data)) - allowed)
    if unknown:
        names = ", ".join(repr(k) for k in unknown)
        raise InputError(f"Unknown key{'s' if len(unknown) > 1 else ''} {names}{_where(context)};"
                         f" allowed: {', '.join(sorted(allowed))}.")
    return dict(data)


def _check_setting(name: str, value: Setting, context: str) -> Setting:
    where = f"parameter '{name}'{_where(context)}"
    scalar = (bool, int, float, str)
    if isinstance(value, scalar):
        return value
    if isinstance(value, Mapping):
        value = [value]
    if isinstance(value, list):
        if not value:
            raise InputError(f"The {where} is an empty list.")
        if all(isinstance(v, scalar) for v in value):
            return list(value)
        out = []
        for item in value:
            item = _check_keys(item, {"filter", "value"}, where)
            if "value" not in item:
                raise InputError(f"A filter entry of the {where} has no 'value'.")
            inner = item["value"]
            if not (isinstance(inner, scalar) or
                    (isinstance(inner, list) and inner and all(isinstance(v, scalar) for v in inner))):
                raise InputError(f"The {where} has a filter value that is neither a number nor a list.")
            # The catch-all entry is written as mergekit writes it: no filter key at all
            if item.get("filter") is not None and not isinstance(item["filter"], str):
                raise InputError(f"A filter of the {where} must be text (part of a tensor name), "
                                 f"not {item['filter']!r}.")
            out.append({"value": inner} if item.get("filter") is None else
                       {"filter": item["filter"], "value": inner})
        return out
    raise InputError(f"The {where} must be a number, a list or filter entries, not {value!r}.")


def _parameters(data: Any, context: str) -> dict[str, Setting] | None:
    if data is None:
        return None
    if not isinstance(data, Mapping):
        raise InputError(f"'parameters'{_where(context)} must be a mapping.")
    return {str(k): _check_setting(str(k), v, context) for k, v in data.items()}


def _model_name(value: Any, context: str) -> str:
    if isinstance(value, Mapping) and "model" in value:  # mergekit's long form {model: {path: ...}}
        value = value["model"]
        if isinstance(value, Mapping):
            value = value.get("path")
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"'model'{_where(context)} must be a path or a repo id, not {value!r}.")
    return value.strip()


def normalize_dtype(value: Any, key: str) -> str | None:
    if value is None:
        return None
    name = _DTYPE_ALIASES.get(str(value).lower(), str(value).lower())
    if name not in DTYPES:
        raise InputError(f"'{key}: {value}' is not a floating-point dtype; use one of {', '.join(DTYPES)}.")
    return name


TOKENIZER_KEYS = {"source", "tokens", "pad_to_multiple_of"}
TOKEN_KEYS = {"source", "force"}
TOKEN_SOURCE_KINDS = {"zero": {"kind"}, "model_token": {"kind", "model", "token_id", "token"}}


def _token_source(value: Any, context: str) -> str | dict:
    """A token's embedding source: a model, {kind: zero} or {kind: model_token, model, token_id|token}."""
    if not isinstance(value, Mapping) or "kind" not in value:
        return _model_name(value, context)
    kind = value["kind"]
    if kind not in TOKEN_SOURCE_KINDS:
        raise InputError(f"'kind' in {context} must be zero or model_token, not {kind!r}.")
    value = _check_keys(value, TOKEN_SOURCE_KINDS[kind], context)
    if kind == "zero":
        return {"kind": "zero"}
    out = {"kind": kind, "model": _model_name(value.get("model"), context)}
    if ("token_id" in value) == ("token" in value):
        raise InputError(f"{context} needs exactly one of 'token_id' or 'token'.")
    if "token_id" in value:
        token_id = value["token_id"]
        if isinstance(token_id, bool) or not isinstance(token_id, int) or token_id < 0:
            raise InputError(f"'token_id' in {context} must be a non-negative integer, not {token_id!r}.")
        out["token_id"] = token_id
    else:
        if not isinstance(value["token"], str) or not value["token"]:
            raise InputError(f"'token' in {context} must be a token string, not {value['token']!r}.")
        out["token"] = value["token"]
    return out


def _tokenizer_block(data: Any) -> dict | None:
    """mergekit's `tokenizer:` block, checked; its source defaults to union, as in mergekit."""
    if data is None:
        return None
    block = _check_keys(data, TOKENIZER_KEYS, "'tokenizer'")
    # the source is always written, so that an otherwise empty block still means union when dumped
    out: dict[str, Any] = {"source": _model_name(block.get("source") or "union", "tokenizer.source")}
    pad = block.get("pad_to_multiple_of")
    if pad is not None:
        if isinstance(pad, bool) or not isinstance(pad, int) or pad < 1:
            raise InputError(f"'pad_to_multiple_of' in 'tokenizer' must be a positive integer, not {pad!r}.")
        out["pad_to_multiple_of"] = pad
    tokens = block.get("tokens")
    if tokens is not None:
        if not isinstance(tokens, Mapping):
            raise InputError("'tokens' in 'tokenizer' must map each token to its settings.")
        out["tokens"] = {}
        for token, settings in tokens.items():
            context = f"tokenizer.tokens[{token!r}]"
            if not isinstance(token, str) or not token:
                raise InputError(f"Each key of 'tokens' in 'tokenizer' must be a token string, not {token!r}.")
            settings = _check_keys({} if settings is None else settings, TOKEN_KEYS, context)
            entry: dict[str, Any] = {}
            if settings.get("source") is not None:
                entry["source"] = _token_source(settings["source"], f"{context}.source")
            if "force" in settings:
                if not isinstance(settings["force"], bool):
                    raise InputError(f"'force' in {context} must be true or false, not {settings['force']!r}.")
                entry["force"] = settings["force"]
            out["tokens"][token] = entry
    return out


def recipe_from_dict(data: Any) -> Recipe:
    data = _check_keys(data, TOP_KEYS, "the recipe")
    method = data.get("merge_method")
    if not isinstance(method, str) or not method:
        raise InputError("The recipe has no 'merge_method'.")
    if bool(data.get("models")) == bool(data.get("slices")):
        raise InputError("The recipe must have exactly one of 'models' or 'slices'.")
    models = None
    if data.get("models"):
        if not isinstance(data["models"], list):
            raise InputError("'models' must be a list.")
        models = []
        for i, entry in enumerate(data["models"]):
            ctx = f"models[{i}]"
            if isinstance(entry, str):
                entry = {"model": entry}
            entry = _check_keys(entry, MODEL_KEYS, ctx)
            models.append(ModelEntry(_model_name(entry.get("model"), ctx),
                                     _parameters(entry.get("parameters"), ctx)))
    slices = None
    if data.get("slices"):
        if not isinstance(data["slices"], list):
            raise InputError("'slices' must be a list.")
        slices = []
        for i, raw in enumerate(data["slices"]):
            ctx = f"slices[{i}]"
            raw = _check_keys(raw, SLICE_KEYS, ctx)
            if raw.get("residual_weight") is not None:
                raise InputError(f"'residual_weight' in {ctx} is not supported.")
            if not isinstance(raw.get("sources"), list) or not raw["sources"]:
                raise InputError(f"{ctx} needs a non-empty 'sources' list.")
            sources = []
            for j, src in enumerate(raw["sources"]):
                sctx = f"{ctx}.sources[{j}]"
                src = _check_keys(src, SOURCE_KEYS, sctx)
                lr = src.get("layer_range")
                if (not isinstance(lr, list) or len(lr) != 2 or not all(isinstance(x, int) for x in lr)
                        or lr[0] < 0 or lr[1] <= lr[0]):
                    raise InputError(f"'layer_range' in {sctx} must be [start, end] with 0 <= start < end, not {lr!r}.")
                sources.append(SliceSource(_model_name(src.get("model"), sctx), (lr[0], lr[1]),
                                           _parameters(src.get("parameters"), sctx)))
            lengths = {s.layer_range[1] - s.layer_range[0] for s in sources}
            if len(lengths) > 1:
                raise InputError(f"All sources of {ctx} must span the same number of layers.")
            slices.append(OutputSlice(sources,
                                      _model_name(raw["base_model"], ctx) if raw.get("base_model") else None,
                                      _parameters(raw.get("parameters"), ctx)))
    seed = data.get("random_seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise InputError(f"'random_seed' must be an integer, not {seed!r}.")
    tokenizer_source = data.get("tokenizer_source")
    if tokenizer_source is not None:
        tokenizer_source = _model_name(tokenizer_source, "tokenizer_source")
    tokenizer = _tokenizer_block(data.get("tokenizer"))
    if tokenizer_source is not None and tokenizer is not None:
        raise InputError("The recipe sets both 'tokenizer_source' and 'tokenizer'; keep one of them.")
    name = data.get("name")
    name = str(name) if isinstance(name, (int, float)) and not isinstance(name, bool) else name  # name: 2024
    for key, value in (("name", name), ("chat_template", data.get("chat_template"))):
        if value is not None and not isinstance(value, str):
            raise InputError(f"'{key}' must be text, not {value!r}.")
    return Recipe(
        merge_method=method,
        base_model=_model_name(data["base_model"], "base_model") if data.get("base_model") else None,
        models=models,
        slices=slices,
        parameters=_parameters(data.get("parameters"), "the global parameters"),
        dtype=normalize_dtype(data.get("dtype"), "dtype"),
        out_dtype=normalize_dtype(data.get("out_dtype"), "out_dtype"),
        tokenizer_source=tokenizer_source,
        tokenizer=tokenizer,
        chat_template=data.get("chat_template"),
        random_seed=seed,
        name=name,
    )


def load_recipe(source: str | Path) -> Recipe:
    """Read a recipe from a YAML file path (or YAML text containing a newline)."""
    text = str(source)
    where = "the recipe text"
    if "\n" not in text:
        path = Path(text).expanduser()
        if not path.is_file():
            raise InputError(f"Recipe file '{path}' not found.")
        text, where = read_text(path, "Recipe file"), f"'{path}'"
    data = load_yaml(text, where)
    if data is None:
        raise InputError(f"{where} is empty.")
    return recipe_from_dict(data)


def recipe_to_dict(recipe: Recipe) -> dict:
    out: dict[str, Any] = {}
    if recipe.name:
        out["name"] = recipe.name
    if recipe.models is not None:
        out["models"] = [
            {"model": m.model, **({"parameters": copy.deepcopy(m.parameters)} if m.parameters else {})}
            for m in recipe.models
        ]
    if recipe.slices is not None:
        out["slices"] = []
        for s in recipe.slices:
            item: dict[str, Any] = {"sources": [
                {"model": src.model, "layer_range": list(src.layer_range),
                 **({"parameters": copy.deepcopy(src.parameters)} if src.parameters else {})}
                for src in s.sources]}
            if s.base_model:
                item["base_model"] = s.base_model
            if s.parameters:
                item["parameters"] = copy.deepcopy(s.parameters)
            out["slices"].append(item)
    out["merge_method"] = recipe.merge_method
    for key in ("base_model", "parameters", "dtype", "out_dtype", "tokenizer_source", "tokenizer",
                "chat_template", "random_seed"):
        value = getattr(recipe, key)
        if value is not None and value != {}:
            out[key] = copy.deepcopy(value)
    return out


class _Dumper(yaml.SafeDumper):
    pass


def _represent_list(dumper: yaml.SafeDumper, data: list) -> yaml.Node:
    flow = all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in data)
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=flow)


_Dumper.add_representer(list, _represent_list)


def dump_recipe(recipe: Recipe) -> str:
    """YAML in mergekit's layout; load_recipe(dump_recipe(r)) == r."""
    return yaml.dump(recipe_to_dict(recipe), Dumper=_Dumper, sort_keys=False, allow_unicode=True)


def iter_parameter_names(recipe: Recipe) -> Iterator[tuple[str, str]]:
    """(parameter name, where) for every parameter the recipe sets."""
    for name in recipe.parameters or {}:
        yield name, "the global parameters"
    for i, m in enumerate(recipe.models or []):
        for name in m.parameters or {}:
            yield name, f"models[{i}] ({m.model})"
    for i, s in enumerate(recipe.slices or []):
        for name in s.parameters or {}:
            yield name, f"slices[{i}]"
        for j, src in enumerate(s.sources):
            for name in src.parameters or {}:
                yield name, f"slices[{i}].sources[{j}] ({src.model})"
