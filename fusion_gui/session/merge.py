"""The Merge tab's session: MergeState behind intent methods that change it and emit once.

Views call an intent (add_models, set_method, set_global, ...) and redraw on `changed(origin)`;
`origin` is the view that asked, so it can skip rebuilding the widget the user is still dragging.
No view writes the state itself. An intent that changes nothing emits nothing. Opening a recipe
is all or nothing: it is checked first, and one that does not load leaves the state as it was.
While a merge runs (`locked`), no intent changes the recipe: its plots and result describe it.
"""

from __future__ import annotations

import copy
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from psygnal import Signal

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.merge.recipe import Recipe, dump_recipe, load_recipe
from fusion_gui.engine.merge.settings import Setting
from fusion_gui.session.merge_state import DEFAULT_METHOD, MergeState

LOCKED = "A merge is running: the recipe stays as it is until the merge ends or is cancelled."


def find_method(name: str | None):
    """The registered merge method called `name`, or None."""
    from fusion_gui.engine.methods import registry

    return registry().get(name) if name else None


class MergeSession:
    changed = Signal(object)  # origin: the view that asked for the change, or None
    message = Signal(str)  # a note for the status line (what an intent did besides the obvious)

    def __init__(self) -> None:
        self.state = MergeState()
        self.recipe_folder: Path | None = None  # the folder of the recipe file last opened
        self.locked = False  # a merge of this recipe is running

    # --- reading ---------------------------------------------------------------------------

    def recipe(self) -> Recipe:
        return self.state.to_recipe()

    def method(self):
        return find_method(self.state.method)

    def takes_base(self) -> bool:
        method = self.method()
        return method is None or method.base != "none"

    def unknown_parameters(self) -> list[str]:
        """Parameter names the recipe sets that its method does not take (mergekit ignores them)."""
        method = self.method()
        return self.state.unknown_parameters(method) if method is not None else []

    # --- the one way state changes ---------------------------------------------------------

    @contextmanager
    def _change(self, origin: object) -> Iterator[MergeState]:
        before = copy.deepcopy(self.state)
        yield self.state
        if self.state != before and self.locked:
            self.state = before
            self.message.emit(LOCKED)
            self.changed.emit(None)  # every view redraws the recipe that runs, the asking one too
        elif self.state != before:
            self.changed.emit(origin)

    # --- recipes ---------------------------------------------------------------------------

    def load_recipe(self, recipe: Recipe, origin: object = None) -> None:
        """Replace the state with `recipe`; InputError (state untouched) when the app cannot hold it."""
        if self.locked:
            raise InputError(LOCKED)
        if find_method(recipe.merge_method) is None:
            from fusion_gui.engine.methods import get_method

            get_method(recipe.merge_method)  # raises the InputError that names the known methods
        state = MergeState.from_recipe(recipe)
        dump_recipe(state.to_recipe())  # it must spell back, or opening it would half-work
        self.state = state
        self.changed.emit(origin)

    def open_recipe(self, path: str | Path, origin: object = None) -> list[str]:
        """Load a recipe file, model paths relative to it read against its folder. Returns the notes
        to show (paths resolved, unknown parameters); InputError leaves everything as it was."""
        from fusion_gui.engine.merge.model_paths import describe_moves, resolve_model_paths

        if self.locked:
            raise InputError(LOCKED)
        path = Path(path)
        recipe = load_recipe(str(path))
        recipe, moved = resolve_model_paths(recipe, path.parent)
        self.load_recipe(recipe, origin)
        self.recipe_folder = path.parent
        notes = [describe_moves(moved, path.parent)] if moved else []
        unknown = self.unknown_parameters()
        if unknown:
            notes.append(unknown_sentence(unknown, recipe.merge_method))
        return notes

    def reset(self, origin: object = None) -> None:
        with self._change(origin):
            self.state = MergeState()

    # --- models ----------------------------------------------------------------------------

    def add_models(self, refs: list[str], origin: object = None) -> list[str]:
        """Append models; the first one added to an empty merge whose method takes a base is the base.
        Returns the references added (ones already there are skipped)."""
        added: list[str] = []
        if self.locked:
            self.message.emit(LOCKED)
            return added
        if self.state.uses_slices:
            self.message.emit("This recipe uses slices: edit its models in the YAML file.")
            return added
        with self._change(origin) as state:
            for ref in map(str, refs):
                if ref in state.model_refs():
                    continue
                if not state.models and state.base_model is None and self.takes_base():
                    state.base_model = ref
                else:
                    state.add_model(ref)
                added.append(ref)
            self._fill_required()
        return added

    def remove_models(self, refs: list[str], origin: object = None) -> None:
        with self._change(origin) as state:
            for ref in refs:
                state.remove_model(ref)

    def set_base(self, ref: str | None, origin: object = None) -> None:
        with self._change(origin) as state:
            state.set_base(ref)
            self._fill_required()

    # --- method and parameters -------------------------------------------------------------

    def set_method(self, name: str, origin: object = None) -> None:
        method = find_method(name)
        if method is None:
            raise InputError(f"Unknown merge method '{name}'.")
        with self._change(origin) as state:
            before = set(state.parameters) | {k for m in state.models for k in (m.parameters or {})}
            state.set_method(method)
            after = set(state.parameters) | {k for m in state.models for k in (m.parameters or {})}
        dropped = sorted(before - after)
        if dropped:
            self.message.emit(f"{method.pretty_name} does not take {', '.join(dropped)}: dropped.")

    def set_global(self, name: str, setting: Setting | None, origin: object = None) -> None:
        with self._change(origin) as state:
            state.set_global_setting(name, setting)

    def set_model_setting(self, ref: str, name: str, setting: Setting | None, origin: object = None) -> None:
        with self._change(origin) as state:
            state.set_model_setting(ref, name, setting)

    def drop_unknown_parameters(self, origin: object = None) -> None:
        with self._change(origin) as state:
            state.drop_parameters(set(self.unknown_parameters()))

    def set_dtype(self, dtype: str | None, origin: object = None) -> None:
        with self._change(origin) as state:
            state.dtype = dtype

    def set_out_dtype(self, dtype: str | None, origin: object = None) -> None:
        with self._change(origin) as state:
            state.out_dtype = dtype

    def set_seed(self, seed: int | None, origin: object = None) -> None:
        with self._change(origin) as state:
            state.random_seed = seed

    # --- tokenizer -------------------------------------------------------------------------

    def set_tokenizer(self, source: str | None, pad_to_multiple_of: int = 0, origin: object = None) -> None:
        with self._change(origin) as state:
            state.set_tokenizer(source, pad_to_multiple_of)

    def set_chat_template(self, template: str | None, origin: object = None) -> None:
        with self._change(origin) as state:
            state.chat_template = template

    def _fill_required(self) -> None:
        method = self.method()
        if method is not None:
            self.state.fill_required(method)


def unknown_sentence(names: list[str], method: str) -> str:
    quoted = ", ".join(f"'{n}'" for n in names)
    method_spec = find_method(method)
    takes = ", ".join(p.name for p in method_spec.params) if method_spec is not None else ""
    return (f"{method} does not take the parameter{'s' if len(names) > 1 else ''} {quoted}"
            f"{f' (it takes {takes})' if takes else ''}; the merge would ignore "
            f"{'them' if len(names) > 1 else 'it'}. Correct or remove {'them' if len(names) > 1 else 'it'}.")


__all__ = ["DEFAULT_METHOD", "MergeSession", "find_method", "unknown_sentence"]
