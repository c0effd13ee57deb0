"""The download job: fetch the files a merge needs into the standard Hugging Face cache, with progress
per file and overall, cancel between chunks, and only a complete snapshot returned.

huggingface_hub does the transfer (hf_hub_download): it resumes a dropped connection with Range
requests within the call, and moves each file into the cache only once it is whole, so a restart
fetches just the files still missing. Progress comes from its tqdm_class hook, which it calls for
every chunk it writes; that is also where a cancel stops it (nothing half-written is kept)."""

from __future__ import annotations

import queue
import threading
import time
from collections import deque
from collections.abc import Generator
from pathlib import Path

from tqdm.auto import tqdm

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import Cancelled, InputError
from fusion_gui.engine.hub.connection import cache_dir as default_cache_dir
from fusion_gui.engine.hub.connection import hub_api
from fusion_gui.engine.hub.errors import hub_errors
from fusion_gui.engine.hub.events import DownloadProgress, RemotePreflight
from fusion_gui.engine.hub.preflight import as_ref, refuse_offline, remote_preflight
from fusion_gui.engine.hub.refs import RepoRef

EVENT_EVERY = 0.1  # seconds between progress events (and always at a file's end)
SPEED_WINDOW = 3.0  # seconds the speed is averaged over


def _bar_class(sink: queue.Queue, stop: threading.Event):
    """A tqdm class for huggingface_hub's tqdm_class hook: draws nothing, reports each chunk, and
    raises Cancelled at the next chunk once `stop` is set."""

    class Bar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            # A Xet download opens two bars, the file's bytes and the network's: count the file's only
            self.counts = not str(kwargs.get("desc", "")).endswith("downloading bytes")
            kwargs["disable"] = True  # our own events instead of a terminal bar
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            if stop.is_set():
                raise Cancelled("Cancelled by the user.")
            if self.counts:
                sink.put(("bytes", int(n or 0)))

    return Bar


class _Speed:
    def __init__(self) -> None:
        self.points: deque[tuple[float, int]] = deque()

    def add(self, done: int) -> float:
        now = time.monotonic()
        self.points.append((now, done))
        while self.points and now - self.points[0][0] > SPEED_WINDOW:
            self.points.popleft()
        t0, d0 = self.points[0]
        return (done - d0) / (now - t0) if now - t0 > 0.2 else 0.0


def _worker(ref: RepoRef, names: list[str], cache: str, sink: queue.Queue, stop: threading.Event) -> None:
    api = hub_api()
    bar = _bar_class(sink, stop)
    revision = ref.revision or "main"  # by name, so the cache's refs/<revision> points at the snapshot
    try:
        for name in names:
            if stop.is_set():  # also between files, should a transfer swallow the cancel raised in its callback
                raise Cancelled("Cancelled by the user.")
            sink.put(("file", name))
            with hub_errors(str(ref), name):
                path = api.hf_hub_download(ref.repo_id, name, revision=revision, cache_dir=cache,
                                           tqdm_class=bar)
            sink.put(("done", (name, path)))
        sink.put(("end", None))
    except BaseException as err:  # noqa: BLE001 - handed to the generator, which raises it
        sink.put(("error", err))


def download_model(ref: str | RepoRef, cancel: CancelToken | None = None, cache_dir: str | None = None,
                   preflight: RemotePreflight | None = None) -> Generator[DownloadProgress, None, Path]:
    """Download what a merge needs of `ref` into the HF cache; returns the snapshot folder.
    Refuses (InputError) before the first byte when the pre-flight found a problem (disk too small)."""
    ref = as_ref(ref)
    refuse_offline(ref)
    cache = cache_dir or default_cache_dir()
    pre = preflight or remote_preflight(ref, None, cache)
    if pre.problems:
        raise InputError(pre.problems[0])
    sizes = {f.name: f.size for f in pre.files}
    total = sum(sizes.values())
    done = sum(f.size for f in pre.files if f.cached)
    sink: queue.Queue = queue.Queue()
    stop = threading.Event()
    thread = threading.Thread(target=_worker, args=(ref, list(sizes), cache, sink, stop), daemon=True,
                              name=f"hub-download {ref}")
    speed, current, file_done, files_done, last_event = _Speed(), "", 0, 0, 0.0
    paths: list[str] = []
    cached = {f.name for f in pre.files if f.cached}

    def event(name: str) -> DownloadProgress:
        rate = speed.add(done)
        eta = (total - done) / rate if rate > 0 else None
        return DownloadProgress(ref.repo_id, name, file_done, sizes.get(name, 0), done, total, files_done,
                                len(sizes), rate, eta)

    thread.start()
    try:
        yield event("")
        while True:
            if cancel is not None and cancel.cancelled:
                stop.set()
            try:
                kind, value = sink.get(timeout=0.1)
            except queue.Empty:
                continue
            if kind == "file":
                current, file_done = value, 0
            elif kind == "bytes":
                file_done += value
                done += value if current not in cached else 0
                if time.monotonic() - last_event >= EVENT_EVERY:
                    last_event = time.monotonic()
                    yield event(current)
            elif kind == "done":
                files_done += 1
                if current in cached:
                    file_done = sizes.get(current, 0)
                paths.append(value[1])
                yield event(current)
            elif kind == "error":
                raise value
            else:
                break
    finally:
        stop.set()  # a closed generator (the app's Cancel) stops the worker at its next chunk
        thread.join(timeout=30)
    snapshot = Path(paths[-1]).parent if paths else None
    from fusion_gui.engine.io.resolve import is_complete_snapshot

    if snapshot is None or not is_complete_snapshot(snapshot) or any(Path(p).parent != snapshot for p in paths):
        raise InputError(f"The download of '{ref}' did not give one complete snapshot (the repo changed "
                         f"while it ran?); run it again.")
    yield event("")
    return snapshot
