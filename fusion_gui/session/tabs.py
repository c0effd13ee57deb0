"""What the Compare, Evaluate and Distill tabs hold, as evented dataclasses (psygnal).

Setting a field emits `state.events.<field>(new_value)` once (nothing when the value is the same);
views bind to those and write through the fields or the intent methods, never to each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from psygnal import SignalGroupDescriptor


@dataclass
class CompareState:
    model_a: str = ""
    model_b: str = ""
    base: str = ""  # "" compares B against A
    device: str = "cpu"
    events = SignalGroupDescriptor()

    def choose(self, model_a: str, model_b: str, base: str | None = None) -> None:
        self.model_a, self.model_b, self.base = str(model_a), str(model_b), str(base or "")


@dataclass
class EvalState:
    models: list[str] = field(default_factory=list)
    tasks: tuple[str, ...] = ()
    text_file: str = ""
    prompt: str = ""
    task_specs: tuple[str, ...] = ()  # task files and "lm-eval:NAME", scored through evaluate_models
    chat_template: bool = False  # wrap each task query in the tokenizer's chat template
    events = SignalGroupDescriptor()

    def set_models(self, refs: list[str]) -> None:
        self.models = list(dict.fromkeys(str(r) for r in refs))  # each once, in order

    def add_model(self, ref: str) -> None:
        if str(ref) not in self.models:
            self.models = [*self.models, str(ref)]


@dataclass
class DistillState:
    """The distill form as the YAML mapping the engine's config_from_dict reads, plus the output."""

    config: dict = field(default_factory=dict)
    out_dir: str = ""
    events = SignalGroupDescriptor()
