"""Folders a job writes before they are complete, and the owner record that lets a later job clean up.

Every job writes its output into a hidden folder beside OUT_DIR and renames it into place when done.
A job that is killed (kill -9, power loss) cannot remove that folder, so each one carries an owner
record (process id, host, the process's start time, the kind of job). The next job writing into the
same parent folder removes those whose owner is gone; it never touches a folder whose owner is still
running, nor one written from another host (whose processes it cannot see): those are reported.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import time
import uuid
from pathlib import Path

import psutil

from fusion_gui.engine.errors import OutputError
from fusion_gui.engine.io.writer import format_size
from fusion_gui.events import Log, PartialFolder

OWNER_FILE = ".fusion-gui-owner.json"
# what a job names its folders while writing: merge/distill/LoRA outputs, Fisher cache entries,
# the output a --force run moves aside, Trainer checkpoints (only while they carry a record)
_NAMES = re.compile(r"^(\..+\.partial-[0-9a-f]{8}|\.tmp-.+-[0-9a-f]{8}|\..+\.old-[0-9a-f]{8}|checkpoint-\d+)$")
RUNNING, GONE, OTHER_HOST, UNKNOWN = "running", "gone", "other host", "unknown"


def _host() -> str:
    return socket.gethostname()


def _started(pid: int) -> float:
    return psutil.Process(pid).create_time()


def owner_record(kind: str) -> dict:
    """This process as the owner of a folder being written."""
    return {"pid": os.getpid(), "host": _host(), "started": _started(os.getpid()), "kind": kind,
            "since": time.time()}


def claim(folder: Path, kind: str, exist_ok: bool = False) -> Path:
    """Create `folder` (parents too when exist_ok) with this process's owner record in it."""
    folder.mkdir(parents=exist_ok, exist_ok=exist_ok)
    (folder / OWNER_FILE).write_text(json.dumps(owner_record(kind)) + "\n", encoding="utf-8")
    return folder


def release(folder: Path) -> None:
    """Drop the owner record: the folder is complete (or about to be renamed into place)."""
    try:
        (folder / OWNER_FILE).unlink()
    except FileNotFoundError:
        pass


def temp_dir_for(out_dir: Path) -> Path:
    """A fresh hidden folder name beside OUT_DIR, on the same file system so the rename is atomic."""
    return out_dir.parent / f".{out_dir.name}.partial-{uuid.uuid4().hex[:8]}"


def new_partial(out_dir: Path, kind: str) -> Path:
    """Create the hidden folder a job writes OUT_DIR into, owned by this process."""
    return claim(temp_dir_for(out_dir), kind)


def publish(temp: Path, out_dir: Path, force: bool) -> None:
    """Rename the finished temp folder to OUT_DIR; with force, replace what was there."""
    old = None
    if out_dir.exists():
        if not force:  # keep the work under a visible name (the caller deletes its temporary folder)
            kept = out_dir.parent / f"{out_dir.name}-{uuid.uuid4().hex[:8]}"
            release(temp)
            os.rename(temp, kept)
            raise OutputError(f"Output folder '{out_dir}' appeared while writing; the result is in '{kept}'.")
        old = out_dir.parent / f".{out_dir.name}.old-{uuid.uuid4().hex[:8]}"
        os.rename(out_dir, old)
    release(temp)
    os.rename(temp, out_dir)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _owner_state(record: dict | None) -> str:
    if not record:
        return UNKNOWN
    if record.get("host") != _host():
        return OTHER_HOST
    try:
        pid, started = int(record["pid"]), float(record["started"])
        process = psutil.Process(pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            return GONE
        # a recycled pid belongs to a process that started later
        return RUNNING if abs(process.create_time() - started) < 1.0 else GONE
    except psutil.NoSuchProcess:
        return GONE
    except (psutil.AccessDenied, KeyError, TypeError, ValueError):
        return RUNNING if isinstance(record.get("pid"), int) else UNKNOWN  # cannot tell: keep it


def _read_record(folder: Path) -> dict | None:
    try:
        record = json.loads((folder / OWNER_FILE).read_text(encoding="utf-8"))
        return record if isinstance(record, dict) else None
    except (OSError, ValueError):
        return None


def _size(folder: Path) -> int:
    total = 0
    for root, _, files in os.walk(folder):
        for name in files:
            try:
                total += os.lstat(os.path.join(root, name)).st_size
            except OSError:
                pass
    return total


def find_partials(parent: Path) -> tuple[PartialFolder, ...]:
    """The unfinished folders in `parent`: hidden partial folders, and checkpoints still being written."""
    found = []
    try:
        entries = sorted(os.scandir(parent), key=lambda e: e.name)
    except OSError:
        return ()
    for entry in entries:
        if not _NAMES.match(entry.name) or not entry.is_dir(follow_symlinks=False):
            continue
        folder = Path(entry.path)
        record = _read_record(folder)
        if record is None and not entry.name.startswith("."):
            continue  # a finished checkpoint: no record
        record = record or {}
        found.append(PartialFolder(str(folder), str(record.get("kind", "unknown job")), _owner_state(record),
                                   str(record.get("host", "")), record.get("pid") if isinstance(record.get("pid"), int)
                                   else None, _size(folder)))
    return tuple(found)


def describe(partial: PartialFolder) -> str:
    """One line: the folder, its size, who wrote it and whether that job still runs."""
    owner = {RUNNING: f"its {partial.kind} (process {partial.pid}) is still running",
             GONE: f"left by a {partial.kind} (process {partial.pid}) that no longer runs",
             OTHER_HOST: f"written by a {partial.kind} on host {partial.host}, which this machine cannot check",
             UNKNOWN: "with no owner record (an older version, or a job starting right now)"}[partial.state]
    return f"{partial.path} ({format_size(partial.bytes)}), {owner}"


def sweep_partials(parent: Path) -> list[Log]:
    """Remove the partial folders in `parent` whose owner is gone; report the ones left alone."""
    logs = []
    for partial in find_partials(parent):
        if partial.state == GONE:
            shutil.rmtree(partial.path, ignore_errors=True)
            logs.append(Log(f"Removed the partial folder {describe(partial)}."))
        elif partial.state in (OTHER_HOST, UNKNOWN):
            logs.append(Log(f"Left the partial folder {describe(partial)}; delete it if no job is writing it.",
                            "warning"))
    return logs
