"""Turn what the user wrote (a path or a Hugging Face repo id) into a local path, offline."""

from __future__ import annotations

import os
from pathlib import Path

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.hub.connection import cache_dir as hub_cache_dir
from fusion_gui.engine.hub.refs import looks_like_repo_id, split_revision

ALLOW_HINT = "pass --allow-download (in the app: allow downloads from the Hub in the settings)"


def not_downloaded_sentence(refs: list[str]) -> str:
    """The one sentence for Hub models that are not in the local cache while downloads are not allowed."""
    names = ", ".join(f"'{r}'" for r in refs)
    some = "Model " + names + " is" if len(refs) == 1 else "Models " + names + " are"
    return (f"{some} neither a file or folder here nor in the local Hugging Face cache "
            f"(HF_HUB_CACHE={hub_cache_dir()}), and downloads are off: {ALLOW_HINT} to fetch "
            f"{'it' if len(refs) == 1 else 'them'} from the Hub.")


def _from_cache(ref: str, cache_dir: str) -> Path | None:
    if not looks_like_repo_id(ref):
        return None  # clearly a path, not a repo id
    repo_id, revision = split_revision(ref)
    try:
        from huggingface_hub import snapshot_download

        # local_files_only: never touch the network, only what is already downloaded.
        folder = snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True
        )
    except Exception:  # not cached, bad repo id, missing snapshot: all mean "not found" here
        return None
    path = Path(folder)
    return path if path.is_dir() and is_complete_snapshot(path) else None


def is_complete_snapshot(folder: Path) -> bool:
    """A cached snapshot is a model only once its weights are all there: a download that stopped
    half-way (config and some shards, no index yet) is not one."""
    from fusion_gui.engine.io.weight_files import find_weight_files

    if (folder / "adapter_config.json").is_file():
        return any((folder / n).is_file() for n in ("adapter_model.safetensors", "adapter_model.bin"))
    try:
        find_weight_files(folder)
    except InputError:
        return False
    return True


def find_local_model(ref: str) -> Path | None:
    """The local file or folder `ref` names, or its complete snapshot in the HF cache; None when the
    model would have to be downloaded first."""
    text = str(ref).strip()
    if not text:
        return None
    path = Path(text).expanduser()
    if path.exists():
        return Path(os.path.abspath(path))
    return _from_cache(text, hub_cache_dir())


def resolve_model_path(ref: str) -> Path:
    """A folder, a weights file, or a repo id ('org/name[@revision]') in the local HF cache."""
    text = str(ref).strip()
    if not text:
        raise InputError("No model given: the model reference is empty.")
    path = Path(text).expanduser()
    if path.exists():  # absolute, but links kept: messages name the path the user typed
        return Path(os.path.abspath(path))
    found = find_local_model(text)
    if found is not None:
        return found
    cache_dir = hub_cache_dir()
    if "/" in text and looks_like_repo_id(text):
        raise InputError(not_downloaded_sentence([text]))
    raise InputError(
        f"Model '{ref}' not found: no such file or folder, and no model '{ref}' in the local "
        f"Hugging Face cache (HF_HUB_CACHE={cache_dir})."
    )


def is_local_path(ref: str) -> bool:
    """True when `ref` names an existing file or folder (so it is not a repo id)."""
    return Path(str(ref).strip()).expanduser().exists()


def model_label(ref: str, path: Path) -> str:
    """How a model is named in messages: its folder or file name for a path, else the repo id."""
    return path.name if is_local_path(ref) else str(ref).strip()
