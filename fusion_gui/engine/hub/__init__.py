"""Models from the Hugging Face Hub, and results back to it. Everything goes through huggingface_hub
(its HfApi, its cache layout and token store, its download and upload functions); no Qt here.

The API the app and the CLI use (names kept stable):

- `parse_repo_ref(text) -> RepoRef`: 'org/name' or 'org/name@revision'; InputError otherwise.
  `looks_like_repo_id(text)` says whether text is shaped like one (refs.py).
- `search_models(query, limit=20) -> list[HubModelRow]`: the dialog's search (search.py).
- `remote_preflight(ref, base=None, cache_dir=None) -> RemotePreflight`: architecture, layers, tensor
  names/shapes/dtypes from the safetensors headers (range requests), the files a merge needs
  (`.files`), what is still to download (`.download_bytes`), and `.problems` (does not fit the base,
  disk too small), all before a byte of weights is fetched (preflight.py).
- `download_model(ref, cancel=None, cache_dir=None, preflight=None) -> Generator[DownloadProgress, None,
  Path]`: fetch the files the pre-flight lists into the standard HF cache; per-file and overall bytes,
  speed, ETA; the cancel token is checked between chunks; returns the snapshot folder, only once it is
  complete (download.py).
- `missing_models(refs) -> list[str]`: the repo ids neither on disk nor complete in the HF cache.
  `fetch_models(refs, cancel=None, allow=False, base=None) -> Generator[DownloadProgress, None,
  dict[str, Path]]`: the recipe path: all pre-flights first (each checked against `base`, and the total
  against the free disk), then the downloads; without `allow`, InputError naming the missing models and
  `--allow-download` (fetch.py). `preflight_missing(refs, base, allow)`: the dry run's pre-flights.
- `publish(out_dir, repo_id, private=False, revision=None, cancel=None, license=None)
  -> Generator[UploadProgress, None, str]`: create the repo, complete the model card's front matter, upload file by file, commit;
  returns the repo's URL (upload.py). `completed_card(folder, license=None) -> str` is the README it
  uploads (the local one is not changed); `output_kind(folder)`: 'merge', 'distillation', 'adapter' or
  'model' (card.py).
- `RemoteReader(ref, preflight, folder)`, `fetch_side_files(ref, preflight, folder)`, `stand_ins({ref:
  reader})`: a Hub model planned before it is downloaded (open_model returns the stand-in inside the
  block), as the CLI's dry run does (remote_reader.py).
- Events and results: `HubModelRow`, `RemoteFile`, `RemotePreflight`, `DownloadProgress`,
  `UploadProgress` (events.py).
- Failures are `InputError` with one sentence (errors.py maps huggingface_hub's errors).

Names are loaded lazily, so importing this package costs nothing until one is used.
"""

from __future__ import annotations

import importlib

_WHERE = {
    "RepoRef": "refs", "parse_repo_ref": "refs", "looks_like_repo_id": "refs",
    "search_models": "search",
    "remote_preflight": "preflight", "describe_preflight": "preflight",
    "download_model": "download",
    "missing_models": "fetch", "fetch_models": "fetch", "preflight_missing": "fetch",
    "publish": "upload", "completed_card": "card", "output_kind": "card",
    "HubModelRow": "events", "RemoteFile": "events", "RemotePreflight": "events",
    "DownloadProgress": "events", "UploadProgress": "events",
    "hub_error_sentence": "errors",
    "RemoteReader": "remote_reader", "fetch_side_files": "remote_reader", "stand_ins": "remote_reader",
}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"fusion_gui.engine.hub.{_WHERE[name]}"), name)
