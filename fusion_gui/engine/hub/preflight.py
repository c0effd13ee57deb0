"""Remote pre-flight: what a Hub model is and whether it fits, from its safetensors headers (read with
range requests by huggingface_hub) and config.json, before any weights are downloaded."""

from __future__ import annotations

import json
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.hub.compat import architecture_of, layers_of, misfit_sentence
from fusion_gui.engine.hub.connection import cache_dir as default_cache_dir
from fusion_gui.engine.hub.connection import endpoint, hub_api, offline
from fusion_gui.engine.hub.errors import hub_errors
from fusion_gui.engine.hub.events import RemoteFile, RemotePreflight
from fusion_gui.engine.hub.files import ADAPTER, INDEX, needed_files, weight_index
from fusion_gui.engine.hub.refs import RepoRef, parse_repo_ref
from fusion_gui.formatting import format_bytes

HEADER_READERS = 8  # shards whose headers are read at once (two small range requests each)


def as_ref(ref: str | RepoRef) -> RepoRef:
    return ref if isinstance(ref, RepoRef) else parse_repo_ref(ref)


def refuse_offline(ref: RepoRef) -> None:
    if offline():
        raise InputError(f"HF_HUB_OFFLINE is set, so '{ref}' cannot be read from the Hub; unset it to "
                         f"allow downloads.")


def free_bytes(folder: str | Path) -> int:
    """Free disk where `folder` is (or would be: its nearest existing parent)."""
    path = Path(folder).expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def _small_file(api, ref: RepoRef, commit: str, name: str, folder: str) -> dict:
    """A small JSON file (config, index) read into memory through a throw-away folder, not the cache:
    a cache snapshot holding only a config would look like a model that is there."""
    with hub_errors(str(ref), name):
        path = api.hf_hub_download(ref.repo_id, name, revision=commit, local_dir=folder)
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except ValueError:
        raise InputError(f"{name} of '{ref}' on the Hub is not valid JSON.") from None
    if not isinstance(data, dict):
        raise InputError(f"{name} of '{ref}' on the Hub is not a JSON object.")
    return data


def _cached(ref: RepoRef, commit: str, name: str, cache: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(ref.repo_id, name, cache_dir=cache, revision=commit)
    return isinstance(found, str)


def _base_side(base: "str | RemotePreflight", cache: str) -> tuple[str, str | None, dict[str, tuple]]:
    """(label, architecture, shapes) of the base: a local folder or cached model, else from the Hub."""
    from fusion_gui.engine.io.opener import open_model
    from fusion_gui.engine.io.resolve import find_local_model

    if isinstance(base, RemotePreflight):  # already read from the Hub
        label = base.repo_id + (f"@{base.revision}" if base.revision else "")
        return label, base.architecture, {n: s for n, (s, _) in base.tensors.items()}
    if find_local_model(base) is not None:
        with open_model(base) as reader:
            return reader.label, architecture_of(reader.config), {n: i.shape for n, i in reader.tensors.items()}
    remote = remote_preflight(base, None, cache)
    return str(base), remote.architecture, {n: s for n, (s, _) in remote.tensors.items()}


def remote_preflight(ref: str | RepoRef, base: "str | RemotePreflight | None" = None,
                     cache_dir: str | None = None) -> RemotePreflight:
    """Read a Hub model's headers and config, list the files a merge needs and what of them is still to
    download, and check it against `base` (a path, a repo reference, or the base's own pre-flight) and the
    free disk of the cache.
    InputError when the Hub cannot be read (unknown repo, revision, gated, no network, token refused)."""
    ref = as_ref(ref)
    refuse_offline(ref)
    cache = cache_dir or default_cache_dir()
    api = hub_api()
    with hub_errors(str(ref)):
        info = api.model_info(ref.repo_id, revision=ref.revision, files_metadata=True)
    commit = info.sha or ref.revision or "main"
    sizes = {s.rfilename: (s.size or 0) for s in (info.siblings or [])}
    names = list(sizes)
    with tempfile.TemporaryDirectory(prefix="fusion-gui-preflight-") as folder:
        shards = None
        if weight_index(names):
            weight_map = _small_file(api, ref, commit, INDEX, folder).get("weight_map")
            if not isinstance(weight_map, dict):
                raise InputError(f"{INDEX} of '{ref}' on the Hub has no 'weight_map'.")
            shards = list(dict.fromkeys(weight_map.values()))
        files = needed_files(str(ref), names, shards)
        config = _small_file(api, ref, commit, "config.json", folder) if "config.json" in names else None
    tensors: dict[str, tuple[tuple[int, ...], str]] = {}

    def header(name: str):
        with hub_errors(str(ref), name):
            return api.parse_safetensors_file_metadata(ref.repo_id, name, revision=commit)

    weights = [f for f in files if f.endswith(".safetensors")]
    tensor_files: dict[str, str] = {}
    with ThreadPoolExecutor(max_workers=HEADER_READERS) as pool:  # a 70B model has 30 shards: read at once
        for name, found in zip(weights, pool.map(header, weights)):
            for tensor, meta in found.tensors.items():
                tensors.setdefault(tensor, (tuple(meta.shape), meta.dtype))
                tensor_files.setdefault(tensor, name)
    weight_bytes = sum(sizes.get(f, 0) for f in files if f.endswith(".safetensors"))
    remote_files = tuple(RemoteFile(f, sizes.get(f, 0), _cached(ref, commit, f, cache)) for f in files)
    download = sum(f.size for f in remote_files if not f.cached)
    free = free_bytes(cache)
    problems, notes = [], []
    if download > free:
        problems.append(f"Downloading '{ref}' needs {format_bytes(download, 2)} but only "
                        f"{format_bytes(free, 2)} is free where the Hugging Face cache is ({cache}).")
    skipped = [n for n in names if n.startswith("original/") or n.startswith("consolidated.")]
    if skipped:
        notes.append(f"skipped {len(skipped)} duplicate weight file(s) ({skipped[0]}, ...)")
    arch = architecture_of(config)
    if base and ADAPTER[0] in files:
        notes.append("a LoRA adapter: it is checked against the base once downloaded, with its own base model")
    elif base:
        base_label, base_arch, base_shapes = _base_side(base, cache)
        misfit = misfit_sentence(str(ref), arch, {n: s for n, (s, _) in tensors.items()}, base_label,
                                 base_arch, base_shapes)
        if misfit:
            problems.append(misfit)
    return RemotePreflight(ref.repo_id, ref.revision, commit, arch, layers_of(config), tensors, weight_bytes,
                           remote_files, download, free, tuple(problems), tuple(notes), config, tensor_files)


def describe_preflight(pre: RemotePreflight) -> list[str]:
    """The dry run's lines for one Hub model."""
    name = pre.repo_id + (f"@{pre.revision}" if pre.revision else "")
    dtypes = sorted({d for _, d in pre.tensors.values()})
    lines = [f"  hub model:       {name} ({endpoint()}/{pre.repo_id}) at {pre.commit[:12]}",
             f"    {pre.architecture or 'unknown architecture'}, {pre.num_layers or '?'} layers, "
             f"{len(pre.tensors)} tensors, {'/'.join(dtypes) or '-'}, {format_bytes(pre.weight_bytes, 2)} of weights",
             f"    download:      {format_bytes(pre.download_bytes, 2)} in "
             f"{sum(not f.cached for f in pre.files)} of {len(pre.files)} files "
             f"({format_bytes(pre.free_bytes, 2)} free in the cache)"]
    lines += [f"    note: {n}" for n in pre.notes]
    lines += [f"    problem: {p}" for p in pre.problems]
    return lines
