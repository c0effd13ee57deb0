"""Publish an output folder (a merge, a distillation, a LoRA extraction) to the Hub: create the repo,
upload file by file with progress, then one commit with the completed model card.

Each file goes up through huggingface_hub's preupload_lfs_files before the commit; the Hub keeps what
was uploaded, so after an interruption a rerun skips the large files already there (the commit itself
is all or nothing). The cancel token is checked between files."""

from __future__ import annotations

from collections.abc import Generator
from pathlib import Path

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import InputError
from fusion_gui.engine.hub.card import completed_card
from fusion_gui.engine.hub.connection import hub_api, offline
from fusion_gui.engine.hub.errors import hub_errors
from fusion_gui.engine.hub.events import UploadProgress
from fusion_gui.engine.hub.refs import parse_repo_ref


def _files(folder: Path) -> list[Path]:
    """What is published: every file but hidden ones (.cache, .git) and our partial-output markers."""
    out = []
    for path in sorted(folder.rglob("*")):
        rel = path.relative_to(folder)
        if path.is_file() and not any(part.startswith(".") for part in rel.parts):
            out.append(path)
    return out


def check_output_folder(folder: Path) -> None:
    """InputError unless `folder` holds a finished model or adapter (never a half-written output)."""
    from fusion_gui.engine.io.resolve import is_complete_snapshot

    if not folder.is_dir():
        raise InputError(f"'{folder}' is not a folder; publish the output folder of a merge, a distillation "
                         f"or a LoRA extraction.")
    if not is_complete_snapshot(folder):
        raise InputError(f"'{folder}' holds no complete model weights (or an adapter), so there is nothing to "
                         f"publish.")


def publish(out_dir: str | Path, repo_id: str, private: bool = False, revision: str | None = None,
            cancel: CancelToken | None = None, license: str | None = None
            ) -> Generator[UploadProgress, None, str]:
    """Upload `out_dir` to the model repo `repo_id` (created if missing; `private` only applies then),
    on branch `revision` (created from main if missing). Returns the repo's URL."""
    from huggingface_hub import CommitOperationAdd

    folder = Path(out_dir).expanduser().absolute()
    check_output_folder(folder)
    ref = parse_repo_ref(repo_id)
    revision = revision or ref.revision
    if offline():
        raise InputError(f"HF_HUB_OFFLINE is set, so '{ref.repo_id}' cannot be published; unset it to upload.")
    files = _files(folder)
    total = sum(p.stat().st_size for p in files)
    api = hub_api()
    yield UploadProgress(ref.repo_id, "create", "", 0, total, 0, len(files))
    with hub_errors(ref.repo_id):
        url = str(api.create_repo(ref.repo_id, private=private, exist_ok=True, repo_type="model"))
        if revision:
            api.create_branch(ref.repo_id, branch=revision, exist_ok=True)
    card = completed_card(folder, license).encode("utf-8")
    operations, done = [], 0
    for i, path in enumerate(files, start=1):
        if cancel is not None:
            cancel.raise_if_cancelled()
        rel = path.relative_to(folder).as_posix()
        source = card if rel == "README.md" else str(path)
        op = CommitOperationAdd(path_in_repo=rel, path_or_fileobj=source)
        with hub_errors(ref.repo_id, rel):
            api.preupload_lfs_files(ref.repo_id, [op], revision=revision)
        operations.append(op)
        done += path.stat().st_size
        yield UploadProgress(ref.repo_id, "upload", rel, done, total, i, len(files), url)
    if not (folder / "README.md").is_file():
        operations.append(CommitOperationAdd(path_in_repo="README.md", path_or_fileobj=card))
    if cancel is not None:
        cancel.raise_if_cancelled()
    yield UploadProgress(ref.repo_id, "commit", "", done, total, len(files), len(files), url)
    with hub_errors(ref.repo_id):
        api.create_commit(ref.repo_id, operations, commit_message=f"Upload {folder.name} with fusion-gui",
                          revision=revision)
    yield UploadProgress(ref.repo_id, "done", "", done, total, len(files), len(files), url)
    return url
