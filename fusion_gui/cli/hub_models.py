"""Models named by repo id on the command line: `--allow-download`, fetching what is missing before a job
runs, and the dry run's view of what would be downloaded (the engine is engine/hub/)."""

from __future__ import annotations

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


def dry_run_downloads(refs, base: str | None, allow: bool) -> list[str] | None:
    """The dry run's lines for models still to download (remote pre-flight from their headers), or None when
    every model is here; without `allow`, InputError naming the missing ones."""
    from fusion_gui.engine.hub.fetch import preflight_missing
    from fusion_gui.engine.hub.preflight import describe_preflight
    from fusion_gui.formatting import format_bytes

    checks = preflight_missing([r for r in refs if r], base, allow)
    if not checks:
        return None
    lines = ["Dry run: nothing is downloaded or written.", "  models on the Hub, read from their safetensors headers:"]
    for pre in checks:
        lines += describe_preflight(pre)
    total = sum(p.download_bytes for p in checks)
    lines.append(f"  would download:  {format_bytes(total, 2)} into the Hugging Face cache")
    lines.append("  (the full plan of tensors, memory and output is printed once the models are downloaded)")
    problems = [p for pre in checks for p in pre.problems]
    if problems:  # said as every refusal is: one sentence, exit code 2 (after the report above)
        print("\n".join(lines))
        raise InputError(problems[0])
    return lines
