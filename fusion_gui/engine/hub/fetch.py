"""The recipe path: which models a job names are neither on disk nor complete in the HF cache, and
fetching them, only with the user's permission (offline by default)."""

from __future__ import annotations

from collections.abc import Generator, Iterable
from pathlib import Path

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import InputError
from fusion_gui.engine.hub.connection import offline
from fusion_gui.engine.hub.events import DownloadProgress, RemotePreflight
from fusion_gui.engine.hub.refs import looks_like_repo_id


def missing_models(refs: Iterable[str]) -> list[str]:
    """The references (repo ids) that would have to be downloaded, each once, in order."""
    from fusion_gui.engine.io.resolve import find_local_model

    out = []
    for ref in dict.fromkeys(str(r).strip() for r in refs if r):
        if "/" in ref and looks_like_repo_id(ref) and find_local_model(ref) is None:
            out.append(ref)
    return out


def refuse_missing(refs: Iterable[str], allow: bool) -> list[str]:
    """The missing references, when they may be fetched; else InputError naming them all and how to allow."""
    from fusion_gui.engine.io.resolve import not_downloaded_sentence

    missing = missing_models(refs)
    if missing and not allow:
        raise InputError(not_downloaded_sentence(missing))
    if missing and offline():
        names = ", ".join(f"'{r}'" for r in missing)
        raise InputError(f"HF_HUB_OFFLINE is set, so {names} cannot be downloaded; unset it, or download "
                         f"{'it' if len(missing) == 1 else 'them'} on a machine with network.")
    return missing


def preflight_missing(refs: Iterable[str], base: str | None, allow: bool) -> list[RemotePreflight]:
    """The dry run's view: a remote pre-flight of each missing model, checked against `base`."""
    from fusion_gui.engine.hub.preflight import remote_preflight

    missing = refuse_missing(refs, allow)
    base_check = remote_preflight(base) if base in missing else base  # the base read from the Hub once
    return [base_check if ref == base else remote_preflight(ref, base_check) for ref in missing]


def fetch_models(refs: Iterable[str], cancel: CancelToken | None = None, allow: bool = False,
                 base: str | None = None) -> Generator[DownloadProgress, None, dict[str, Path]]:
    """Download each missing model (all pre-flights first, each checked against `base`, so a bad repo, a
    model that does not fit or a full disk stops the job before any download); returns {reference: snapshot
    folder} of what was fetched."""
    from fusion_gui.engine.hub.download import download_model
    from fusion_gui.engine.hub.preflight import free_bytes
    from fusion_gui.engine.hub.connection import cache_dir
    from fusion_gui.formatting import format_bytes

    refs = list(refs)
    missing = refuse_missing(refs, allow)
    checks = preflight_missing(refs, base, allow)
    for pre in checks:
        if pre.problems:
            raise InputError(pre.problems[0])
    need = sum(p.download_bytes for p in checks)
    free = free_bytes(cache_dir())
    if need > free:
        raise InputError(f"Downloading {', '.join(missing)} needs {format_bytes(need, 2)} but only "
                         f"{format_bytes(free, 2)} is free where the Hugging Face cache is ({cache_dir()}).")
    fetched = {}
    for ref, pre in zip(missing, checks):
        fetched[ref] = yield from download_model(ref, cancel, preflight=pre)
    return fetched
