"""Does a model fit the base? The checks a local model gets, on names, shapes and architecture alone
(so they work on safetensors headers read from the Hub as well as on a folder's)."""

from __future__ import annotations


def _shape_text(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def architecture_of(config: dict | None) -> str | None:
    config = config or {}
    arch = config.get("architectures")
    return ",".join(arch) if arch else config.get("model_type")


def layers_of(config: dict | None) -> int | None:
    config = config or {}
    for key in ("num_hidden_layers", "n_layer", "num_layers"):
        if isinstance(config.get(key), int):
            return config[key]
    text = config.get("text_config")
    return layers_of(text) if isinstance(text, dict) else None


def misfit_sentence(label: str, arch: str | None, shapes: dict[str, tuple], base_label: str,
                    base_arch: str | None, base_shapes: dict[str, tuple]) -> str | None:
    """Why `label` cannot be merged with the base, in one sentence; None when it fits."""
    if arch and base_arch and arch != base_arch:
        return f"'{label}' is {arch}, the base '{base_label}' is {base_arch}: they cannot be merged."
    missing = [n for n in base_shapes if n not in shapes]
    if missing:
        return (f"'{label}' lacks {len(missing)} tensors the base '{base_label}' has, e.g. '{missing[0]}'; "
                f"it does not fit the base.")
    extra = [n for n in shapes if n not in base_shapes]
    if extra:
        return f"'{label}' has {len(extra)} tensors the base '{base_label}' lacks, e.g. '{extra[0]}'."
    for name, shape in shapes.items():
        if tuple(base_shapes[name]) != tuple(shape):
            return (f"Tensor '{name}' of '{label}' is {_shape_text(shape)} but {_shape_text(base_shapes[name])} "
                    f"in the base '{base_label}'; it does not fit the base.")
    return None
