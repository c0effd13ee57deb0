"""Which files of a Hub repo a merge needs: the safetensors weights (shards and index), config,
tokenizer and generation files. Never .bin when safetensors exist, never the duplicate weights some
repos also carry (`original/`, `consolidated.*`), nothing in subfolders."""

from __future__ import annotations

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.merge.output import TOKENIZER_FILES

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"
ADAPTER = ("adapter_model.safetensors", "adapter_config.json")
SIDE_FILES = ("config.json", "generation_config.json", *TOKENIZER_FILES)


def _top_level(name: str) -> bool:
    return "/" not in name and not name.startswith("consolidated.")


def weight_index(names: list[str]) -> str | None:
    """The safetensors index to read the shard list from, if the repo is sharded."""
    return INDEX if INDEX in names else None


def only_bin_sentence(repo: str, names: list[str]) -> str | None:
    """The sentence for a repo whose weights are only pickled .bin/.pt files (None when it has safetensors)."""
    top = [n for n in names if _top_level(n)]
    if any(n.endswith(".safetensors") for n in top):
        return None
    pickled = [n for n in top if n.endswith((".bin", ".pt", ".pth")) and not n.startswith("training_args")]
    if not pickled:
        return None
    return (f"'{repo}' has only pickled PyTorch weights ({', '.join(sorted(pickled)[:3])}"
            f"{', ...' if len(pickled) > 3 else ''}) and no safetensors; fusion-gui fetches only safetensors "
            f"from the Hub (a .bin loads only with torch's weights_only=True): download it yourself and open "
            f"the folder, or pick a repo with safetensors.")


def needed_files(repo: str, names: list[str], shards: list[str] | None) -> list[str]:
    """The files to fetch, in download order: side files first, then the weights, the index last (so an
    interrupted download never looks like a complete model). `shards`: the index's shard names, if any."""
    top = [n for n in names if _top_level(n)]
    sentence = only_bin_sentence(repo, names)
    if sentence:
        raise InputError(sentence)
    if shards is not None:
        missing = [s for s in dict.fromkeys(shards) if s not in names]
        if missing:
            raise InputError(f"The index of '{repo}' names shard {missing[0]}, which the repo does not have.")
        weights, tail = list(dict.fromkeys(shards)), [INDEX]
    elif SINGLE in top:
        weights, tail = [SINGLE], []
    elif ADAPTER[0] in top:
        weights, tail = [ADAPTER[0]], []
    else:
        found = sorted(n for n in top if n.endswith(".safetensors"))
        if len(found) != 1:
            what = "no safetensors weights" if not found else f"several .safetensors files and no {INDEX}"
            raise InputError(f"'{repo}' has {what}; fusion-gui cannot tell which files are the model.")
        weights, tail = found, []
    side = [n for n in SIDE_FILES + (ADAPTER[1],) if n in top]
    return side + weights + tail
