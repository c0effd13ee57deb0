"""Hub pre-flight and download with the real huggingface_hub client against the fake Hub (tests/fixtures/hub_server.py)."""

from __future__ import annotations

import pytest

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import Cancelled, InputError


def run(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as stop:
            return events, stop.value


def test_preflight_reads_headers_and_lists_only_needed_files(hub):
    from fusion_gui.engine.hub import remote_preflight

    pre = remote_preflight("org/ft")
    names = [f.name for f in pre.files]
    assert names[0] == "config.json" and names[-1] == "model.safetensors.index.json"
    assert not any(n.startswith(("original/", "consolidated")) for n in names)
    assert "tokenizer.json" in names and any(n.startswith("model-0000") for n in names)
    assert pre.architecture == "LlamaForCausalLM" and pre.num_layers == 2
    assert pre.tensors["model.embed_tokens.weight"] == ((256, 32), "F32")
    assert pre.download_bytes == sum(f.size for f in pre.files) > 0
    assert pre.ok and pre.notes  # the skipped duplicates are mentioned
    # headers only: no weight file was fetched whole
    assert not [r for m, p, r in hub.requests if m == "GET" and p.endswith(".safetensors") and r is None]
