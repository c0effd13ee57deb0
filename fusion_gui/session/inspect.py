"""What the Inspect views hold (Qt-free, evented with psygnal): the models picked for the similarity
matrix and their base, the layer group shown, the two models matched by depth, the models whose
spectral health is drawn; and the drill-down request a click on a plot makes (which tensor, of which
models, against which base, at which density), formed from the Merge or Compare tab's state.

Views change these only through the intent methods and fields; "Merge these" writes the Merge tab
through MergeSession's own intents.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psygnal import SignalGroupDescriptor

WHOLE_MODEL = "model"  # the similarity group of every tensor (SimilarityResult.whole)
DEFAULT_DENSITY = 0.5  # the mask preview's density when the merge sets none


@dataclass(frozen=True)
class DrillDownRequest:
    """One tensor of `models`, each against `base`, with masks previewed at `density`."""

    tensor: str
    models: tuple[str, ...]
    base: str
    density: float = DEFAULT_DENSITY

    @property
    def title(self) -> str:
        return f"{self.tensor} — {len(self.models)} model{'s' if len(self.models) != 1 else ''} against {self.base}"


def merge_density(merge_state) -> float:
    """The Merge view's global density when it is one number in (0, 1], else the default."""
    value = merge_state.global_setting("density")
    if isinstance(value, (int, float)) and not isinstance(value, bool) and 0 < float(value) <= 1:
        return float(value)
    return DEFAULT_DENSITY


def request_from_merge(merge_state, tensor: str) -> DrillDownRequest | None:
    """The drill-down of `tensor` for the Merge view: its inputs against its base; None without a
    base or without another model (nothing to measure a change from)."""
    base = merge_state.base_model
    models = tuple(r for r in merge_state.model_refs() if r != base)
    if not base or not models:
        return None
    return DrillDownRequest(tensor, models, base, merge_density(merge_state))


def request_from_compare(compare_state, tensor: str, density: float = DEFAULT_DENSITY) -> DrillDownRequest | None:
    """Compare: A and B against the base; without a base, B against A."""
    a, b, base = compare_state.model_a, compare_state.model_b, compare_state.base
    if not a or not b:
        return None
    if base:
        return DrillDownRequest(tensor, (a, b), base, density)
    return DrillDownRequest(tensor, (b,), a, density)


@dataclass
class InspectState:
    models: list[str] = field(default_factory=list)  # the fine-tunes compared
    base: str = ""
    group: str = WHOLE_MODEL  # "model" or a layer group's name ("layer 3", "outside layers")
    depth_a: str = ""
    depth_b: str = ""
    spectral_models: list[str] = field(default_factory=list)  # base, inputs, merged output…
    events = SignalGroupDescriptor()

    def set_models(self, refs: list[str]) -> None:
        self.models = [r for r in dict.fromkeys(str(r).strip() for r in refs) if r and r != self.base]

    def add_model(self, ref: str) -> None:
        ref = str(ref).strip()
        if ref and ref not in self.models and ref != self.base:
            self.models = [*self.models, ref]

    def remove_model(self, ref: str) -> None:
        self.models = [m for m in self.models if m != ref]

    def set_base(self, ref: str) -> None:
        """The base; a model that was among the compared ones leaves them."""
        ref = str(ref).strip()
        if ref in self.models:
            self.models = [m for m in self.models if m != ref]
        self.base = ref

    def choose_group(self, name: str) -> None:
        self.group = name or WHOLE_MODEL

    def choose_depth_models(self, model_a: str, model_b: str) -> None:
        self.depth_a, self.depth_b = str(model_a).strip(), str(model_b).strip()

    def set_spectral_models(self, refs: list[str]) -> None:
        self.spectral_models = [r for r in dict.fromkeys(str(r).strip() for r in refs) if r]

    def similarity_from_merge(self, merge_state) -> bool:
        """The Merge view's models: its base as the base, the others as the fine-tunes. False (nothing
        changes) when it holds no model."""
        refs = merge_state.model_refs()
        if not refs:
            return False
        base = merge_state.base_model or ""
        self.set_base(base)
        self.set_models([r for r in refs if r != base])
        return True

    def depth_from_merge(self, merge_state) -> bool:
        """The Merge view's base (else its first model) as A, its first other model as B."""
        refs = merge_state.refs_base_first()
        if len(refs) < 2:
            return False
        self.choose_depth_models(refs[0], refs[1])
        return True

    def spectral_from_merge(self, merge_state) -> bool:
        refs = merge_state.refs_base_first()
        if refs:
            self.set_spectral_models(refs)
        return bool(refs)

    def fill_empty_from_merge(self, merge_state) -> None:
        """What a view shown for the first time starts from: each empty choice takes the Merge view's
        models; a choice the user made stays."""
        if not self.models and not self.base:
            self.similarity_from_merge(merge_state)
        if not self.depth_a and not self.depth_b:
            self.depth_from_merge(merge_state)
        if not self.spectral_models:
            self.spectral_from_merge(merge_state)

    def problem(self) -> str:
        """Why the similarity job cannot start yet, in one sentence; "" when it can."""
        if not self.base:
            return "Pick the base the models were fine-tuned from."
        if len(self.models) < 2:
            return "Pick at least two models besides the base."
        return ""

    def merge_these(self, merge_session) -> list[str]:
        """Fill the Merge view with these models and this base (its method and settings stay);
        models it held that are not among these leave it. A method that takes no base gets the
        fine-tunes only, and a note. Returns the references added."""
        if self.problem():
            return []
        takes_base = merge_session.takes_base()
        keep = {*self.models, *([self.base] if takes_base else [])}
        gone = [r for r in merge_session.state.model_refs() if r not in keep]
        if gone:
            merge_session.remove_models(gone)
        if not takes_base:
            added = merge_session.add_models(self.models)
            merge_session.message.emit(f"{merge_session.state.method} takes no base: pick a method such as "
                                       f"TIES to merge the changes from {self.base}.")
            return added
        added = merge_session.add_models([self.base, *self.models])
        merge_session.set_base(self.base)
        return added
