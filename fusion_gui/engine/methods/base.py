"""What a merge method is: one pure tensor function plus the specs of its parameters.

The GUI generates its forms from these specs and `fusion-gui methods` prints them, so a new
method is one function and one `register(...)` call, never a new widget. A data-driven method
(Fisher) adds a Preparation: a step the merge runs before streaming tensors, whose result gives
the method what it needs per tensor; the merge loop itself knows nothing of any method.
"""

from __future__ import annotations

import contextvars
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Literal, Mapping, Protocol, Sequence

import torch

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.events import Event

# "global": one value for the whole merge (may still vary by layer or tensor name).
# "model": one value per input model. applies_to_base says whether the base model takes it too
# (mergekit's INPUT scope) or only the non-base models (mergekit's NON_BASE scope).
Scope = Literal["global", "model"]


@dataclass(frozen=True)
class ParamSpec:
    name: str
    scope: Scope
    type: type  # float, int, bool, or Path (a file the method reads, e.g. calibration text)
    default: Any = None  # None with required=True means the recipe must give it
    minimum: float | None = None
    maximum: float | None = None
    help: str = ""
    required: bool = False
    applies_to_base: bool = False
    per_tensor: bool = True  # False: one value for the whole merge (no gradients or filters)

    def validate(self, value: Any) -> Any:
        """Coerce a recipe value to this parameter's type, or raise ValueError naming it."""
        if self.type is Path:
            if not isinstance(value, (str, Path)) or not str(value).strip():
                raise ValueError(f"parameter '{self.name}' must be a file path, not {value!r}")
            path = Path(str(value)).expanduser()
            if not path.is_file():
                raise ValueError(f"parameter '{self.name}': no file at '{path}'")
            return str(path.absolute())
        if self.type is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, (int, float)) and value in (0, 1):
                return bool(value)
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ValueError(f"parameter '{self.name}' must be true or false, not {value!r}")
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise ValueError(f"parameter '{self.name}' must be a number, not {value!r}")
        try:
            number = self.type(float(value)) if self.type is int else float(value)
        except ValueError:
            raise ValueError(f"parameter '{self.name}' must be a number, not {value!r}") from None
        return number


@dataclass(frozen=True)
class MethodResult:
    tensor: torch.Tensor
    # Set by methods that elect signs (TIES-like): fraction of elements where the inputs'
    # non-zero changes disagree in sign, and fraction of change elements kept in the result.
    sign_conflict: float | None = None
    kept_fraction: float | None = None


# fn(tensors, base_index, params, per_model, generator) -> MethodResult
#   tensors: every input's tensor for this output tensor, in recipe order (base included,
#            at base_index, when the method takes a base), already cast to the compute dtype
#            and on the compute device. A method with a Preparation gets, after the n weights,
#            the tensors its Prepared gives for them (float32): the first of every input, in
#            input order, then the second of every input, and so on.
#   params: global parameter values resolved for this tensor.
#   per_model: one dict per input; the base's dict holds only parameters with applies_to_base,
#            plus what Prepared.model_params gives for that model.
#   generator: a torch.Generator seeded for this tensor (random methods only), else None.
MethodFn = Callable[
    [Sequence[torch.Tensor], "int | None", Mapping[str, Any], Sequence[Mapping[str, Any]],
     "torch.Generator | None"],
    MethodResult,
]


@dataclass(frozen=True)
class PrepareEstimate:
    """What a prepare step will do, said at plan time without reading tensor data."""

    notes: tuple[str, ...] = ()  # for the dry run, e.g. what is estimated on which text, what is cached
    warnings: tuple[str, ...] = ()  # e.g. fewer calibration blocks than asked for
    peak_bytes: int = 0  # memory the step itself needs at most (it runs before the merge loop)
    copies_per_input: int = 0  # float32 tensors as large as its weight each input brings into the loop


class Prepared(Protocol):
    """What a prepare step returns: what the method needs besides the weights, per input model."""

    # Whether the prepared tensors' rows are their weight's rows, so a tokenizer merge re-orders them
    # with the weights (a Fisher: yes; a Gram matrix of a layer's inputs: no).
    rows_follow_weights: bool

    def tensors_for(self, model: str, tensor: str) -> Sequence[torch.Tensor]:
        """The tensors this input brings for its tensor `tensor` (the same count for every input)."""

    def model_params(self, model: str) -> Mapping[str, Any]:
        """Values added to this input's per-model parameters (e.g. the norm of its whole Fisher)."""

    def close(self) -> None:
        """Release files or memory; the merge calls it once it is done."""


@dataclass(frozen=True)
class Preparation:
    """A data-driven method's step before the merge streams tensors. Fisher estimates each input's
    Fisher on a calibration text; RegMean would gather each Linear's input Gram matrix the same way.

    check(plan) runs at plan time: every check that needs no tensor data (InputError otherwise),
    and what the step will cost. run(plan, cancel) runs first in the merge: a generator that yields
    progress events and returns the Prepared. `plan` is the MergePlan (engine/merge/plan.py)."""

    check: Callable[[Any], PrepareEstimate]
    run: Callable[[Any, CancelToken], Generator[Event, None, Prepared]]


@dataclass(frozen=True)
class MergeMethod:
    name: str
    pretty_name: str
    fn: MethodFn
    params: tuple[ParamSpec, ...]
    description: str = ""
    reference: str = ""
    base: Literal["required", "optional", "none"] = "optional"
    min_models: int = 1
    max_models: int | None = None
    random: bool = False
    sign_election: bool = False  # reports sign_conflict / kept_fraction
    ranks_by_magnitude: bool = False  # sorts |delta| (float32 keys + int64 indices of scratch)
    prepare: Preparation | None = None  # data-driven methods only
    # Memory the method holds besides its input tensors, in bytes per element of the tensor, given the
    # number of inputs and the compute dtype's item size; the output tensor included (measured; see
    # benchmarks/bench_memory.py). The plan's memory estimate is built from it.
    scratch: Callable[[int, int], float] = lambda n, itemsize: 4 * (n + 2)
    # Bytes per element each model's work adds when it runs beside another's (TIES's sorts), or
    # None for a method that does nothing side by side. The plan allows it within its memory budget.
    side_by_side_scratch: Callable[[int], float] | None = None

    @property
    def global_params(self) -> tuple[ParamSpec, ...]:
        return tuple(p for p in self.params if p.scope == "global")

    @property
    def model_params(self) -> tuple[ParamSpec, ...]:
        return tuple(p for p in self.params if p.scope == "model")

    def param(self, name: str) -> ParamSpec | None:
        return next((p for p in self.params if p.name == name), None)


_REGISTRY: dict[str, MergeMethod] = {}


def register(method: MergeMethod) -> MergeMethod:
    if method.name in _REGISTRY:
        raise ValueError(f"merge method {method.name!r} is registered twice")
    _REGISTRY[method.name] = method
    return method


def registry() -> Mapping[str, MergeMethod]:
    return _REGISTRY



# How many models' work a method may run side by side for the tensor being merged; the merge loop
# sets it per tensor from the plan's memory budget. None (outside a merge): the method's own rule.
_SIDE_BY_SIDE: contextvars.ContextVar[int | None] = contextvars.ContextVar("side_by_side", default=None)


@contextmanager
def side_by_side(models: int | None) -> Iterator[None]:
    """Within this block, methods run at most `models` models' work at once."""
    token = _SIDE_BY_SIDE.set(models)
    try:
        yield
    finally:
        _SIDE_BY_SIDE.reset(token)


def side_by_side_limit() -> int | None:
    """The limit set by side_by_side(), or None outside one."""
    return _SIDE_BY_SIDE.get()
