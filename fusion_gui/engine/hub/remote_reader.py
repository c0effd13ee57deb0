"""A Hub model the planner can plan with before it is downloaded: ModelReader's interface over what the
remote pre-flight read (safetensors headers, config.json) and the model's small side files (tokenizer,
generation config) fetched into a throw-away folder. No tensor data: get() says the model is not here yet.

engine/io/opener.py's `stand_ins(readers)` makes open_model return these readers for their references inside
the block, so the dry run runs the same plan_merge a local merge does (tensors, shapes, memory, output size)."""

from __future__ import annotations

from pathlib import Path

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.hub.events import RemotePreflight
from fusion_gui.engine.io.opener import stand_ins  # noqa: F401 - part of this module's API
from fusion_gui.engine.io.reader import TensorFiles
from fusion_gui.engine.io.weight_files import SAFETENSORS_DTYPES, TensorInfo


class RemoteReader(TensorFiles):
    """ModelReader's interface, from a remote pre-flight: names, shapes, dtypes and config only."""

    def __init__(self, ref: str, pre: RemotePreflight, folder: Path):
        self.ref, self.path, self.label = ref, Path(folder), ref
        self.config = pre.config
        self.metadata: dict[str, str] = {}
        self.tensors: dict[str, TensorInfo] = {}
        for name, (shape, dtype_name) in pre.tensors.items():
            dtype = SAFETENSORS_DTYPES.get(dtype_name)
            if dtype is None:
                raise InputError(f"'{ref}' stores tensor {name!r} as dtype {dtype_name}, which fusion-gui "
                                 f"cannot read.")
            numel = 1
            for d in shape:
                numel *= d
            self.tensors[name] = TensorInfo(name, tuple(shape), dtype, numel * dtype.itemsize,
                                            pre.tensor_files.get(name, ""))
        self._files = [self.path / f.name for f in pre.files if f.name.endswith(".safetensors")]

    def get(self, name: str):
        raise InputError(f"'{self.label}' is not downloaded yet, so tensor '{name}' cannot be read; run the "
                         f"job with downloads allowed.")


def fetch_side_files(ref: str, pre: RemotePreflight, folder: Path) -> None:
    """Config, tokenizer and generation files (not weights) into `folder`, for the plan's tokenizer checks."""
    from fusion_gui.engine.hub.connection import hub_api
    from fusion_gui.engine.hub.errors import hub_errors

    api = hub_api()
    folder.mkdir(parents=True, exist_ok=True)
    for f in pre.files:
        if not f.name.endswith((".safetensors", ".index.json")):
            with hub_errors(ref, f.name):
                api.hf_hub_download(pre.repo_id, f.name, revision=pre.commit, local_dir=folder)
