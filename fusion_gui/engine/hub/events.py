"""What the Hub jobs yield and return: frozen dataclasses the app and the CLI draw (no Qt here)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class HubModelRow:
    """One search result: what the "From the Hub..." dialog lists."""

    repo_id: str
    downloads: int = 0
    likes: int = 0
    license: str | None = None
    gated: bool = False  # access must be requested on the repo's page
    size_bytes: int | None = None  # weights, from the Hub's safetensors parameter count (None: unknown)
    pipeline_tag: str | None = None


@dataclass(frozen=True)
class RemoteFile:
    """A file of a Hub repo that a merge needs."""

    name: str  # path in the repo, e.g. 'model-00001-of-00002.safetensors'
    size: int  # bytes
    cached: bool = False  # already complete in the local HF cache


@dataclass(frozen=True)
class RemotePreflight:
    """What the safetensors headers and config.json on the Hub say, before anything is downloaded."""

    repo_id: str
    revision: str | None  # as the user wrote it (None: the default branch)
    commit: str  # the commit the files were read at (downloads use it, so they all match)
    architecture: str | None  # config.json's architectures (or model_type)
    num_layers: int | None
    tensors: dict[str, tuple[tuple[int, ...], str]]  # name -> (shape, safetensors dtype such as 'BF16')
    weight_bytes: int  # all tensors, from the headers
    files: tuple[RemoteFile, ...]  # what a merge needs, in download order
    download_bytes: int  # of `files`, what is not in the cache yet
    free_bytes: int  # free disk where the HF cache is
    problems: tuple[str, ...] = ()  # one sentence each: does not fit the base, disk too small, ...
    notes: tuple[str, ...] = ()  # worth saying, not a reason to refuse (e.g. skipped duplicate weights)
    config: dict | None = field(default=None, repr=False)  # config.json as read from the Hub
    tensor_files: dict[str, str] = field(default_factory=dict, repr=False)  # tensor -> its safetensors file

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class DownloadProgress:
    """Progress of download_model: the file being fetched and the whole download."""

    repo_id: str
    file: str  # the file being fetched ('' once all are done)
    file_done: int  # bytes of this file
    file_total: int
    done: int  # bytes of all files (files already in the cache count as done)
    total: int
    files_done: int
    files_total: int
    bytes_per_second: float  # over the last few seconds; 0.0 until known
    eta_seconds: float | None  # None until a speed is known

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass(frozen=True)
class UploadProgress:
    """Progress of publish: one event per file uploaded, then the commit."""

    repo_id: str
    stage: str  # 'create' | 'upload' | 'commit' | 'done'
    file: str  # the file just uploaded ('' outside the upload stage)
    done: int  # bytes uploaded so far
    total: int
    files_done: int
    files_total: int
    url: str = ""  # the repo's page, once known


@dataclass(frozen=True)
class ModelsFetched:
    """fetch_models' result: each reference and the local folder it now resolves to."""

    paths: dict[str, str] = field(default_factory=dict)
    downloaded_bytes: int = 0
