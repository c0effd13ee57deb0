"""Turn what the user wrote (a path or a Hugging Face repo id) into a local path, offline."""

from __future__ import annotations

import os
from pathlib import Path

from fusion_gui.engine.errors import InputError


def hub_cache_dir() -> str:
    """The Hugging Face cache folder, read now (not at import) so a changed HF_HUB_CACHE counts."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return os.path.expanduser(env)
    home = os.environ.get("HF_HOME")
    if home:
        return os.path.join(os.path.expanduser(home), "hub")
    return constants.HF_HUB_CACHE


def split_revision(ref: str) -> tuple[str, str | None]:
    """'org/name@rev' -> ('org/name', 'rev'); no '@' -> (ref, None)."""
    repo, sep, rev = ref.partition("@")
    return (repo, rev or None) if sep else (ref, None)


def _from_cache(ref: str, cache_dir: str) -> Path | None:
    repo_id, revision = split_revision(ref)
    if not repo_id or repo_id.startswith((".", "/", "~")) or "\\" in repo_id or repo_id.count("/") > 1:
        return None  # clearly a path, not a repo id
    try:
        from huggingface_hub import snapshot_download

        # local_files_only: never touch the network, only what is already downloaded.
        folder = snapshot_download(
            repo_id, revision=revision, cache_dir=cache_dir, local_files_only=True
        )
    except Exception:  # not cached, bad repo id, missing snapshot: all mean "not found" here
        return None
    path = Path(folder)
    return path if path.is_dir() else None


def resolve_model_path(ref: str) -> Path:
    """A folder, a weights file, or a repo id ('org/name[@revision]') in the local HF cache."""
    text = str(ref).strip()
    if not text:
        raise InputError("No model given: the model reference is empty.")
    path = Path(text).expanduser()
    if path.exists():  # absolute, but links kept: messages name the path the user typed
        return Path(os.path.abspath(path))
    cache_dir = hub_cache_dir()
    found = _from_cache(text, cache_dir)
    if found is not None:
        return found
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
