"""Hub pre-flight and download with the real huggingface_hub client against the fake Hub (tests/fixtures/hub_server.py)."""

from __future__ import annotations

import pytest

from fusion_gui.engine.cancel import CancelToken
from fusion_gui.engine.errors import Cancelled, InputError
from helpers import run_job


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


def test_download_fills_the_cache_and_the_ref_then_resolves(hub):
    from fusion_gui.engine.hub import download_model
    from fusion_gui.engine.io.opener import open_model

    events, snapshot = run_job(download_model("org/ft"))
    assert (snapshot / "model.safetensors.index.json").is_file() and "snapshots" in snapshot.parts
    last = events[-1]
    assert last.done == last.total > 0 and last.files_done == last.files_total
    assert all(b.done >= a.done for a, b in zip(events, events[1:]))
    with open_model("org/ft") as reader:  # offline now: the cache has it
        assert reader.path == snapshot and "model.embed_tokens.weight" in reader.tensors


def test_a_dropped_connection_resumes_with_a_range_request(hub):
    from fusion_gui.engine.hub import download_model

    shard = next(f for f in hub.repos["org/base"].files if f.startswith("model-00001"))
    hub.drops[("org/base", shard)] = 1
    _, snapshot = run_job(download_model("org/base"))
    assert hub.dropped == [("org/base", shard)]
    ranges = hub.gets("org/base", shard)
    assert ranges[0] is None and ranges[1].startswith("bytes=") and ranges[1] != "bytes=0-"
    assert (snapshot / shard).read_bytes() == hub.repos["org/base"].files[shard]


def test_a_line_that_keeps_dropping_fails_in_one_sentence_and_a_rerun_resumes(hub, monkeypatch):
    from fusion_gui.engine.hub import download_model
    from fusion_gui.engine.io.resolve import find_local_model

    monkeypatch.setattr("time.sleep", lambda seconds: None)  # the library waits 1 s between its retries
    shards = sorted(f for f in hub.repos["org/ft"].files if f.startswith("model-0"))
    hub.drops[("org/ft", shards[1])] = 10  # more than the library's 5 retries
    with pytest.raises(InputError) as err:
        run_job(download_model("org/ft"))
    assert f"The connection to the Hub dropped while downloading {shards[1]}" in str(err.value)
    assert "running it again continues" in str(err.value) and find_local_model("org/ft") is None
    hub.drops.clear()
    run_job(download_model("org/ft"))
    assert len(hub.gets("org/ft", shards[0])) == 1 and find_local_model("org/ft") is not None


def test_cancel_keeps_finished_files_and_a_rerun_fetches_only_the_rest(hub):
    from fusion_gui.engine.hub import download_model
    from fusion_gui.engine.io.resolve import find_local_model

    cancel = CancelToken()
    gen = download_model("org/ft", cancel)
    seen = []
    with pytest.raises(Cancelled):
        for event in gen:
            seen.append(event)
            if event.file.startswith("model-00002"):
                cancel.cancel()
    assert find_local_model("org/ft") is None  # half a model is not a model
    first_shard = [f for f in hub.repos["org/ft"].files if f.startswith("model-00001")][0]
    assert len(hub.gets("org/ft", first_shard)) == 1
    run_job(download_model("org/ft"))
    assert len(hub.gets("org/ft", first_shard)) == 1  # not fetched again
    assert find_local_model("org/ft") is not None


def test_preflight_against_a_base_that_does_not_fit(hub, tmp_path):
    from fusion_gui.engine.hub import remote_preflight

    pre = remote_preflight("org/other", base="org/base")
    assert not pre.ok and "does not fit the base" in pre.problems[0]
    assert remote_preflight("org/ft", base="org/base").ok


@pytest.mark.parametrize("ref, words", [
    ("org/nope", "There is no model 'org/nope' on the Hub"),
    ("org/ft@nobranch", "'org/ft' has no revision 'nobranch'"),
    ("org/gated", "is a gated model and this account has no access yet: request it at http"),
    ("org/binonly", "has only pickled PyTorch weights (pytorch_model.bin) and no safetensors"),
])
def test_one_sentence_per_fault(hub, ref, words):
    from fusion_gui.engine.hub import remote_preflight

    with pytest.raises(InputError) as err:
        remote_preflight(ref)
    assert words in str(err.value) and "\n" not in str(err.value)
    if ref == "org/gated":
        assert f"{hub.url}/org/gated" in str(err.value)


def test_a_refused_token_says_so(hub, monkeypatch):
    from fixtures.hub_server import BAD_TOKEN
    from fusion_gui.engine.hub import remote_preflight

    monkeypatch.setenv("HF_TOKEN", BAD_TOKEN)
    with pytest.raises(InputError, match="refused the Hugging Face token"):
        remote_preflight("org/ft")


def test_no_network_and_offline_mode(hub, monkeypatch):
    from fusion_gui.engine.hub import remote_preflight

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(InputError, match="HF_HUB_OFFLINE is set"):
        remote_preflight("org/ft")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    from huggingface_hub import constants

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setattr(constants, "ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(InputError, match="Cannot reach the Hub at http://127.0.0.1:9"):
        remote_preflight("org/ft")


def test_a_download_bigger_than_the_free_disk_is_refused_before_it_starts(hub, monkeypatch):
    from fusion_gui.engine.hub import download_model, preflight

    monkeypatch.setattr(preflight, "free_bytes", lambda folder: 10)
    with pytest.raises(InputError, match="needs .* but only 10 B is free"):
        run_job(download_model("org/ft"))
    assert not any(hub.gets("org/ft", f) for f in hub.repos["org/ft"].files if f.endswith(".safetensors"))


def test_a_missing_file_is_named(hub):
    from fusion_gui.engine.hub.connection import cache_dir, hub_api
    from fusion_gui.engine.hub.errors import hub_errors

    with pytest.raises(InputError, match="'org/ft' has no file 'nope.json' on the Hub"):
        with hub_errors("org/ft", "nope.json"):
            hub_api().hf_hub_download("org/ft", "nope.json", cache_dir=cache_dir())


def test_a_gated_repo_opens_with_a_token_that_has_access(hub, monkeypatch):
    from fusion_gui.engine.hub import remote_preflight

    monkeypatch.setenv("HF_TOKEN", "hf_granted")  # huggingface_hub's own token lookup sends it
    assert remote_preflight("org/gated").ok


def test_a_remote_reader_stands_in_for_planning_and_reads_no_data(hub, tmp_path):
    from fusion_gui.engine.hub import remote_preflight
    from fusion_gui.engine.hub.remote_reader import RemoteReader, fetch_side_files, stand_ins
    from fusion_gui.engine.io.opener import open_model

    pre = remote_preflight("org/ft")
    fetch_side_files("org/ft", pre, tmp_path / "side")
    assert (tmp_path / "side" / "tokenizer.json").is_file() and not list((tmp_path / "side").glob("*.safetensors"))
    reader = RemoteReader("org/ft", pre, tmp_path / "side")
    assert reader.tensors["model.embed_tokens.weight"].nbytes == 256 * 32 * 4
    with stand_ins({"org/ft": reader}):
        assert open_model("org/ft") is reader
    with pytest.raises(InputError, match="neither a file or folder here"):  # only inside the block
        open_model("org/ft")
    with pytest.raises(InputError, match="is not downloaded yet"):
        reader.get("model.embed_tokens.weight")
