"""Models named by repo id on the command line: `--allow-download`, fetching what is missing before a job
runs, and the dry run's view of what would be downloaded (the engine is engine/hub/)."""

from __future__ import annotations

import tempfile
from contextlib import contextmanager
from pathlib import Path

from fusion_gui.cli.drive import drive
from fusion_gui.engine.errors import InputError


def add_download_flag(parser) -> None:
    parser.add_argument("--allow-download", action="store_true",
                        help="fetch models named by repo id (org/name or org/name@revision) that are not in the "
                             "local Hugging Face cache from the Hub (off by default: nothing is downloaded)")


def fetch_missing(refs, allow: bool, progress: bool = True, base: str | None = None) -> None:
    """Download the models in `refs` that are neither on disk nor complete in the HF cache (checked against
    `base` first); without `allow`, InputError naming them and --allow-download."""
    from fusion_gui.engine.hub.fetch import fetch_models, refuse_missing

    refs = [r for r in refs if r]
    if refuse_missing(refs, allow):
        drive(lambda cancel: fetch_models(refs, cancel, allow, base), progress=progress)


def local_folder(ref: str) -> str:
    """The folder a repo id is cached in (so jobs that want a folder take `org/name` too); else `ref` as is."""
    from fusion_gui.engine.io.resolve import find_local_model

    found = find_local_model(ref)
    return str(found) if found is not None and not Path(ref).expanduser().exists() else ref


@contextmanager
def planned_from_headers(refs, base: str | None, allow: bool):
    """For a dry run: the models still on the Hub stand in for themselves from their headers (and small side
    files in a temporary folder) while the block plans; yields the lines that say what would download.
    Without `allow`, InputError naming the missing models; a model that does not fit is refused after
    its report."""
    from fusion_gui.engine.hub.fetch import preflight_missing
    from fusion_gui.engine.hub.preflight import describe_preflight
    from fusion_gui.engine.hub.remote_reader import RemoteReader, fetch_side_files, stand_ins
    from fusion_gui.formatting import format_bytes

    refs = [r for r in refs if r]
    checks = preflight_missing(refs, base, allow)
    if not checks:
        yield []
        return
    missing = [r for r in dict.fromkeys(str(r).strip() for r in refs) if r in _labels(checks)]
    lines = ["  models on the Hub, planned from their safetensors headers (nothing downloaded yet):"]
    for pre in checks:
        lines += describe_preflight(pre)
    lines.append(f"  would download:  {format_bytes(sum(p.download_bytes for p in checks), 2)} into the "
                 f"Hugging Face cache")
    problems = [p for pre in checks for p in pre.problems]
    if problems:  # said as every refusal is: one sentence, exit code 2 (after the report above)
        print("\n".join(["Dry run: nothing is downloaded or written."] + lines))
        raise InputError(problems[0])
    with tempfile.TemporaryDirectory(prefix="fusion-gui-dry-run-") as folder:
        readers = {}
        for ref, pre in zip(missing, checks):
            side = Path(folder) / pre.repo_id.replace("/", "--")
            fetch_side_files(ref, pre, side)
            readers[ref] = RemoteReader(ref, pre, side)
        with stand_ins(readers):
            yield lines


def _labels(checks) -> set[str]:
    return {p.repo_id + (f"@{p.revision}" if p.revision else "") for p in checks}
