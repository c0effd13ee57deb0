"""Where the Hub is and whether it may be reached, read at call time (not at import), so a changed
HF_ENDPOINT or HF_HUB_OFFLINE counts; and the one HfApi the engine talks to it through."""

from __future__ import annotations

import os


def endpoint() -> str:
    """HF_ENDPOINT when set, else huggingface_hub's own (which it read when imported)."""
    from huggingface_hub import constants

    return (os.environ.get("HF_ENDPOINT") or constants.ENDPOINT).rstrip("/")


def offline() -> bool:
    """HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set now, or huggingface_hub started offline."""
    from huggingface_hub import constants

    for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        value = os.environ.get(name)
        if value is not None:
            return value.strip().upper() in ("1", "ON", "YES", "TRUE")
    return bool(constants.HF_HUB_OFFLINE)


def hub_api():
    """An HfApi on the current endpoint; its token is huggingface_hub's (HF_TOKEN or the saved login)."""
    from huggingface_hub import HfApi

    return HfApi(endpoint=endpoint())


def cache_dir() -> str:
    """The Hugging Face cache folder (HF_HUB_CACHE, HF_HOME/hub or the default), read now (not at import)
    so a changed HF_HUB_CACHE counts."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    if env:
        return os.path.expanduser(env)
    home = os.environ.get("HF_HOME")
    if home:
        return os.path.join(os.path.expanduser(home), "hub")
    return constants.HF_HUB_CACHE
