"""A recipe that names Hub repos (`org/name`, `org/name@revision`) in the Merge tab: the pre-flight
says which are not downloaded yet and, with downloads allowed, how much Run will fetch first; Run
fetches them into the HF cache, then merges. Without the setting nothing is fetched and the pre-flight
says how to allow it. Qt-free: the Run view's jobs call these on their worker thread."""

from __future__ import annotations

from fusion_gui.engine.errors import InputError
from fusion_gui.formatting import format_bytes
from fusion_gui.ui.hub.settings_text import ALLOW_DOWNLOADS


def not_allowed_sentence(missing: list[str]) -> str:
    names = ", ".join(missing)
    return (f"Not on this computer: {names}. Turn on Settings › “{ALLOW_DOWNLOADS}” to let Run download "
            f"{'it' if len(missing) == 1 else 'them'}, or add {'it' if len(missing) == 1 else 'them'} with "
            "the Models panel's “From the Hub…” button.")


def hub_models_plan(refs: list[str], allowed: bool) -> tuple[str, list[str]] | None:
    """None when every model (`refs`, the base first) is on disk or cached; else (what Run downloads
    first, the problems the headers show against the base). Without permission: InputError naming the
    missing models and how to allow downloads."""
    from fusion_gui.engine.hub import missing_models
    from fusion_gui.engine.hub.fetch import preflight_missing

    missing = missing_models(refs)
    if not missing:
        return None
    if not allowed:
        raise InputError(not_allowed_sentence(missing))
    reports = preflight_missing(refs, refs[0] if refs else None, True)
    total = sum(r.download_bytes for r in reports)
    each = ", ".join(f"{ref} ({format_bytes(r.download_bytes)})" for ref, r in zip(missing, reports))
    text = (f"Run first downloads {format_bytes(total)} from the Hugging Face Hub: {each}. "
            f"The full plan follows once {'it is' if len(missing) == 1 else 'they are'} here.")
    return text, [p for r in reports for p in r.problems]


def fetch_then(refs: list[str], allowed: bool, job, token):
    """Download what the recipe names (`refs`, the base first) and the cache lacks, each checked against
    the base before the first byte (yielding DownloadProgress), then run `job()`."""
    from fusion_gui.engine.hub import fetch_models, missing_models

    if missing_models(refs):
        yield from fetch_models(refs, token, allowed, base=refs[0])
    return (yield from job())
