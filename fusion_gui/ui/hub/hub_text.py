"""Qt-free parts of the Hub views: the job factories they run, and the sentences they show.

Job factories are module functions so tests can wrap them; each one imports the engine lazily, on the
job's thread (the GUI thread never imports huggingface_hub's network code, let alone calls it)."""

from __future__ import annotations

from pathlib import Path

from fusion_gui.formatting import format_bytes, format_count, format_duration
from fusion_gui.ui.hub.settings_text import ALLOW_DOWNLOADS

DOWNLOADS_OFF = (f"Downloads from the Hugging Face Hub are off: tick “{ALLOW_DOWNLOADS}” (also in the "
                 "Settings menu) to search and download.")
OFFLINE_SET = "HF_HUB_OFFLINE is set: the Hugging Face Hub is not reached; unset it to search and download."


def hub_offline() -> bool:
    """The engine's reading of HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE, taken now (not at import)."""
    from fusion_gui.engine.hub.connection import offline

    return offline()


def search_job(query: str, limit: int, token):
    from fusion_gui.engine.hub import search_models

    yield from ()
    return list(search_models(query, limit=limit))


def preflight_job(ref: str, base: str | None, token):
    """The remote pre-flight (headers only), and the bytes an interrupted download left to resume."""
    from fusion_gui.engine.hub import remote_preflight

    yield from ()
    return remote_preflight(ref, base), partial_bytes(ref)


def download_job(ref: str, token):
    from fusion_gui.engine.hub import download_model

    return download_model(ref, cancel=token)


def publish_job(out_dir: str, repo_id: str, private: bool, revision: str | None, license: str | None, token):
    from fusion_gui.engine.hub import publish

    return publish(out_dir, repo_id, private=private, revision=revision, cancel=token, license=license)


def cache_dir() -> Path:
    from fusion_gui.engine.io.resolve import hub_cache_dir

    return Path(hub_cache_dir())


def partial_bytes(ref: str) -> int:
    """Bytes of unfinished files an interrupted download left in the cache (huggingface_hub resumes them)."""
    repo_id = ref.partition("@")[0]
    blobs = cache_dir() / ("models--" + repo_id.replace("/", "--")) / "blobs"
    try:
        return sum(p.stat().st_size for p in blobs.glob("*.incomplete"))
    except OSError:
        return 0


def search_cells(row) -> tuple[str, str, str, str, str, str]:
    """A search result (HubModelRow) as the table shows it: name, downloads, likes, license, gated, size."""
    return (row.repo_id, format_count(row.downloads), format_count(row.likes), row.license or "-",
            "yes" if row.gated else "no", format_bytes(row.size_bytes))


def describe_remote(ref: str, report, partial: int = 0) -> tuple[str, list[str]]:
    """A RemotePreflight as text (with its notes), and its problems (the base's mismatches, the disk,
    .bin-only weights), one sentence each."""
    dtypes: dict[str, int] = {}
    for _shape, dtype in report.tensors.values():
        dtypes[dtype] = dtypes.get(dtype, 0) + 1
    dtype = max(dtypes, key=dtypes.get) if dtypes else "-"
    files = report.files
    lines = [f"{ref}: {report.architecture or '-'}, {report.num_layers or '-'} layers, "
             f"{format_count(len(report.tensors))} tensors, {dtype}, {format_bytes(report.weight_bytes)} of weights.",
             f"Download: {format_bytes(report.download_bytes)} of {len(files)} file{'s' if len(files) != 1 else ''}"
             + (f" ({format_bytes(partial)} already here from an interrupted download: it resumes)" if partial
                else "")
             + f". Free disk: {format_bytes(report.free_bytes)}."]
    lines += [f"Note: {note}" for note in report.notes]
    return "\n".join(lines), [str(p) for p in report.problems]


def download_text(event) -> tuple[str, str]:
    """(overall line, current file line) of a DownloadProgress; speed and ETA once they are known."""
    overall = f"{format_bytes(event.done)} of {format_bytes(event.total)} · file {event.files_done} of {event.files_total}"
    if event.bytes_per_second:
        overall += f" · {format_bytes(event.bytes_per_second)}/s"
    if event.eta_seconds is not None:
        overall += f" · ETA {format_duration(event.eta_seconds)}"
    file_line = (f"{event.file}: {format_bytes(event.file_done)} of {format_bytes(event.file_total)}"
                 if event.file else "")
    return overall, file_line


def upload_text(event) -> str:
    """One line of an UploadProgress."""
    if event.stage == "create":
        return f"Creating {event.repo_id}…"
    if event.stage == "commit":
        return f"Committing {event.files_total} files…"
    if event.stage == "done":
        return f"Published: {event.url}"
    return (f"{format_bytes(event.done)} of {format_bytes(event.total)} · file {event.files_done} of "
            f"{event.files_total}" + (f" · {event.file}" if event.file else ""))


def fraction(done, total) -> float:
    return min(1.0, max(0.0, done / total)) if total else 0.0


def card_preview_job(out_dir: str, license: str | None, token):
    """The front matter of the model card as it will be published (YAML text), read from the folder."""
    from fusion_gui.engine.hub import completed_card

    yield from ()
    return front_matter(completed_card(out_dir, license))


def front_matter(card: str) -> str:
    """The YAML between a README's opening '---' lines ('' when it has none)."""
    lines = card.lstrip().splitlines()
    if not lines or lines[0].strip() != "---":
        return ""
    end = next((i for i, line in enumerate(lines[1:], 1) if line.strip() == "---"), len(lines))
    return "\n".join(lines[1:end]).strip() + "\n"
