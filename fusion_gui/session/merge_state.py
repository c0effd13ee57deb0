"""What the Merge tab holds, as plain data, and its exact round trip to a recipe.

MergeState keeps every setting as the recipe spells it (scalar, gradient list or filter list),
so the widgets only ever write what the user touched: opening a recipe and saving it back gives
the same recipe. Parts the form cannot edit (slices, per-token embedding rules) ride along untouched.
MergeSession (merge.py) owns one and is what views talk to; this module knows nothing of signals.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fusion_gui.engine.merge.recipe import ModelEntry, OutputSlice, Recipe, referenced_models
from fusion_gui.engine.merge.settings import Setting

DEFAULT_METHOD = "linear"


def all_parameter_names() -> set[str]:
    """Every parameter name some registered method takes."""
    from fusion_gui.engine.methods import registry

    return {p.name for method in registry().values() for p in method.params}


def is_scalar(setting: Setting) -> bool:
    return isinstance(setting, (bool, int, float, str))


def starting_value(spec) -> Any:
    """A sensible value for a parameter the user has not set: its default, else mid-range;
    None for a file (a Path parameter) with no default, which only the user can name."""
    if spec.default is not None:
        return spec.default
    if spec.type is Path:
        return None
    if spec.type is bool:
        return False
    if spec.minimum is not None and spec.maximum is not None:
        middle = (spec.minimum + spec.maximum) / 2
        return int(round(middle)) if spec.type is int else middle
    return 1 if spec.type is int else 1.0


@dataclass
class MergeState:
    method: str = DEFAULT_METHOD
    base_model: str | None = None
    models: list[ModelEntry] = field(default_factory=list)
    parameters: dict[str, Setting] = field(default_factory=dict)
    dtype: str | None = None
    out_dtype: str | None = None
    tokenizer_source: str | None = None
    random_seed: int | None = None
    name: str | None = None
    # mergekit's `tokenizer:` block; the form edits its source and pad_to_multiple_of only.
    tokenizer: dict | None = None
    # Kept as they are: the form shows them but does not edit them.
    slices: list[OutputSlice] | None = None
    chat_template: str | None = None
    # The base set aside while a method that takes no base is picked, restored on switching back.
    set_aside_base: str | None = None

    # --- recipe round trip ---------------------------------------------------------------

    @classmethod
    def from_recipe(cls, recipe: Recipe) -> "MergeState":
        recipe = copy.deepcopy(recipe)
        return cls(
            method=recipe.merge_method, base_model=recipe.base_model,
            models=list(recipe.models or []), parameters=dict(recipe.parameters or {}),
            dtype=recipe.dtype, out_dtype=recipe.out_dtype, tokenizer_source=recipe.tokenizer_source,
            random_seed=recipe.random_seed, name=recipe.name, slices=recipe.slices,
            tokenizer=recipe.tokenizer, chat_template=recipe.chat_template,
        )

    def to_recipe(self) -> Recipe:
        state = copy.deepcopy(self)
        uses_slices = state.slices is not None
        return Recipe(
            merge_method=state.method, base_model=state.base_model,
            models=None if uses_slices else [ModelEntry(m.model, m.parameters or None) for m in state.models],
            slices=state.slices, parameters=state.parameters or None, dtype=state.dtype,
            out_dtype=state.out_dtype, tokenizer_source=state.tokenizer_source,
            tokenizer=state.tokenizer, chat_template=state.chat_template,
            random_seed=state.random_seed, name=state.name,
        )

    # --- models ----------------------------------------------------------------------------

    @property
    def uses_slices(self) -> bool:
        return self.slices is not None

    def model_refs(self) -> list[str]:
        """Every model the form shows, in recipe order, each once (the base included)."""
        return referenced_models(self.models, self.slices, self.base_model)

    def refs_base_first(self) -> list[str]:
        """model_refs() with the base moved to the front: the order the tables show."""
        refs = self.model_refs()
        if self.base_model in refs:
            refs.remove(self.base_model)
            refs.insert(0, self.base_model)
        return refs

    def entry(self, ref: str) -> ModelEntry | None:
        return next((m for m in self.models if m.model == ref), None)

    def add_model(self, ref: str) -> bool:
        """Append a model to the recipe's `models`; False when it is there already."""
        if self.uses_slices or ref in self.model_refs():
            return False
        self.models.append(ModelEntry(ref))
        return True

    def remove_model(self, ref: str) -> None:
        self.models = [m for m in self.models if m.model != ref]
        if self.base_model == ref:
            self.base_model = None
        if self.set_aside_base == ref:
            self.set_aside_base = None

    def set_base(self, ref: str | None) -> None:
        """Mark `ref` as the base; the previous base stays in the merge as an ordinary model."""
        if ref == self.base_model:
            return
        old = self.base_model
        if old and self.entry(old) is None and not self.uses_slices:
            self.models.append(ModelEntry(old))
        self.base_model = ref
        new_entry = self.entry(ref) if ref else None
        if new_entry is not None and not new_entry.parameters:
            self.models.remove(new_entry)

    # --- tokenizer ------------------------------------------------------------------------

    def tokenizer_choice(self) -> tuple[str | None, int]:
        """(source, pad_to_multiple_of): source None copies the base's tokenizer, else "base",
        "union" or a model reference; pad 0 means no padding. Read from either spelling."""
        if self.tokenizer is not None:
            source = self.tokenizer.get("source", "union")  # mergekit's default for the block
            pad = self.tokenizer.get("pad_to_multiple_of") or 0
            return (None if source is None else str(source)), int(pad)
        return self.tokenizer_source, 0

    def set_tokenizer(self, source: str | None, pad_to_multiple_of: int = 0) -> None:
        """Write the choice as mergekit wants it: `tokenizer_source` alone when that says it all,
        else the `tokenizer:` block (never both). Other keys of the block (tokens) are kept."""
        rest = {k: v for k, v in (self.tokenizer or {}).items() if k not in ("source", "pad_to_multiple_of")}
        if source is None:  # no tokenizer work at all: nothing to pad, no token rules
            self.tokenizer_source, self.tokenizer = None, None
        elif pad_to_multiple_of > 0 or rest:
            block: dict = {"source": source}
            if pad_to_multiple_of > 0:
                block["pad_to_multiple_of"] = int(pad_to_multiple_of)
            self.tokenizer_source, self.tokenizer = None, {**block, **rest}
        else:
            self.tokenizer_source, self.tokenizer = source, None

    # --- method and parameters ------------------------------------------------------------

    def set_method(self, method) -> None:
        """Switch method: drop parameters it does not know, give required ones a value."""
        self.method = method.name
        if method.base == "none" and self.base_model:
            self.set_aside_base = self.base_model
            self.set_base(None)
            if self.entry(self.set_aside_base) is None and not self.uses_slices:
                self.models.append(ModelEntry(self.set_aside_base))
        elif method.base != "none" and self.base_model is None and self.set_aside_base:
            if self.set_aside_base in self.model_refs():
                self.set_base(self.set_aside_base)
            self.set_aside_base = None
        # Drop what belongs to other methods; keep names no method knows (a misspelt `desnity`):
        # they are the user's to fix, and unknown_parameters() names them.
        known = {p.name for p in method.params}
        foreign = all_parameter_names() - known
        self.parameters = {k: v for k, v in self.parameters.items() if k not in foreign}
        for_base = {p.name for p in method.params if p.scope == "global" or p.applies_to_base}
        for entry in list(self.models):
            drop = foreign | (known - for_base if entry.model == self.base_model else set())
            if entry.parameters:
                entry.parameters = {k: v for k, v in entry.parameters.items() if k not in drop} or None
            if entry.model == self.base_model and not entry.parameters:
                self.models.remove(entry)  # the base needs no entry of its own
        self.fill_required(method)

    def fill_required(self, method) -> None:
        """Give every required parameter the form does not set yet a starting value."""
        for spec in method.global_params:
            if spec.required and spec.name not in self.parameters and starting_value(spec) is not None:
                self.parameters[spec.name] = starting_value(spec)
        refs = [m.model for m in self.models]
        if self.base_model and self.base_model not in refs:
            refs.append(self.base_model)
        for spec in method.model_params:
            if not spec.required or spec.name in self.parameters or starting_value(spec) is None:
                continue
            for ref in refs:
                if ref == self.base_model and not spec.applies_to_base:
                    continue
                if self.model_setting(ref, spec.name) is None:
                    self.set_model_setting(ref, spec.name, starting_value(spec))

    def unknown_parameters(self, method) -> list[str]:
        """Parameter names the recipe sets that `method` does not take, first mention first."""
        known = {p.name for p in method.params}
        names = list(self.parameters)
        for entry in self.models:
            names += list(entry.parameters or {})
        for out_slice in self.slices or []:
            names += list(out_slice.parameters or {})
            for source in out_slice.sources:
                names += list(source.parameters or {})
        return [n for n in dict.fromkeys(names) if n not in known]

    def drop_parameters(self, names: set[str]) -> None:
        self.parameters = {k: v for k, v in self.parameters.items() if k not in names}
        for entry in self.models:
            if entry.parameters:
                entry.parameters = {k: v for k, v in entry.parameters.items() if k not in names} or None

    def global_setting(self, name: str) -> Setting | None:
        return self.parameters.get(name)

    def set_global_setting(self, name: str, setting: Setting | None) -> None:
        if setting is None:
            self.parameters.pop(name, None)
        else:
            self.parameters[name] = setting

    def model_setting(self, ref: str, name: str) -> Setting | None:
        entry = self.entry(ref)
        return (entry.parameters or {}).get(name) if entry else None

    def set_model_setting(self, ref: str, name: str, setting: Setting | None) -> None:
        entry = self.entry(ref)
        if entry is None:
            if setting is None or self.uses_slices:
                return
            entry = ModelEntry(ref)  # the base takes parameters that apply to it from `models`
            self.models.append(entry)
        params = dict(entry.parameters or {})
        if setting is None:
            params.pop(name, None)
        else:
            params[name] = setting
        entry.parameters = params or None
