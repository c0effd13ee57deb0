"""Model reading (all formats, every bad input) and the streaming sharded writer."""

import errno
import json
import os
import random
import shutil
from collections import namedtuple

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from fusion_gui.engine.errors import InputError, OutputError
from fusion_gui.engine.io import (AsyncShardedWriter, ShardedWriter, open_model, parse_size,
                                  plan_shards, resolve_model_path)
from fusion_gui.engine.io import writer as writer_mod


def sample_tensors():
    g = torch.Generator().manual_seed(0)
    return {
        "embed.weight": torch.randn(16, 8, generator=g).to(torch.bfloat16),
        "layers.0.w": torch.randn(8, 8, generator=g),
        "layers.0.b": torch.randn(8, generator=g).half(),
        "layers.1.w": torch.randn(8, 8, generator=g).to(torch.bfloat16),
        "pos_ids": torch.arange(12, dtype=torch.int64),
        "mask": torch.rand(5, generator=g) > 0.5,
        "fp8": torch.randn(4, 4, generator=g).to(torch.float8_e4m3fn),
        "scalar": torch.tensor(3.5),
        "empty": torch.zeros(0, 4),
    }


def bits_equal(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and torch.equal(
        a.reshape(-1).view(torch.uint8), b.reshape(-1).view(torch.uint8))


def save_sharded(folder, tensors, n_shards=3, ext="safetensors"):
    folder.mkdir(parents=True, exist_ok=True)
    names = list(tensors)
    prefix = "model" if ext == "safetensors" else "pytorch_model"
    weight_map = {}
    for i in range(n_shards):
        file = f"{prefix}-{i + 1:05d}-of-{n_shards:05d}.{ext}"
        part = {n: tensors[n] for n in names[i::n_shards]}
        if ext == "safetensors":
            save_file(part, folder / file)
        else:
            torch.save(part, folder / file)
        weight_map.update(dict.fromkeys(part, file))
    index = {"metadata": {"total_size": 0}, "weight_map": weight_map}
    (folder / f"{prefix}.{ext}.index.json").write_text(json.dumps(index))
    (folder / "config.json").write_text(json.dumps({"model_type": "toy"}))
    return folder


@pytest.fixture
def sharded(tmp_path):
    return save_sharded(tmp_path / "toy", sample_tensors())


def test_reader_lists_from_headers_only(sharded, monkeypatch):
    import safetensors

    monkeypatch.setattr(safetensors, "safe_open", lambda *a, **k: pytest.fail("data opened"))
    reader = open_model(str(sharded))
    expected = sample_tensors()
    assert reader.label == "toy" and reader.config == {"model_type": "toy"}
    assert reader.num_shards == 3 and [f.name for f in reader.files][0].startswith("model-00001")
    assert set(reader.tensors) == set(expected)
    for name, t in expected.items():
        info = reader.tensors[name]
        assert (info.shape, info.dtype, info.nbytes) == (tuple(t.shape), t.dtype, t.nbytes)
    assert reader.total_bytes == sum(t.nbytes for t in expected.values())


@pytest.mark.parametrize("layout", ["sharded", "single", "bare", "diffusers", "odd_name",
                                    "bin", "bin_sharded", "bare_pt"])
def test_get_returns_exact_tensors(tmp_path, layout):
    tensors = sample_tensors()
    if layout.startswith("bin"):  # torch.save cannot hold fp8 on every version: keep it simple
        tensors.pop("fp8")
    folder = tmp_path / "m"
    folder.mkdir()
    ref = folder
    if layout == "sharded":
        save_sharded(folder, tensors)
    elif layout == "bin_sharded":
        save_sharded(folder, tensors, n_shards=2, ext="bin")
    elif layout in ("single", "bare", "diffusers", "odd_name"):
        name = {"diffusers": "diffusion_pytorch_model", "odd_name": "weights"}.get(layout, "model")
        save_file(tensors, folder / f"{name}.safetensors")
        if layout == "diffusers":  # a variant next to the standard file must not be picked
            save_file({"other": torch.ones(1)}, folder / f"{name}.fp16.safetensors")
        ref = folder / f"{name}.safetensors" if layout == "bare" else folder
    else:
        torch.save(tensors, folder / ("pytorch_model.bin" if layout == "bin" else "w.pt"))
        ref = folder / "w.pt" if layout == "bare_pt" else folder
    with open_model(str(ref)) as reader:
        assert (reader.config is not None) == (layout in ("sharded", "bin_sharded"))
        assert set(reader.tensors) == set(tensors)
        for name in reversed(list(tensors)):  # jumps between shards
            assert bits_equal(reader.get(name), tensors[name]), name
        with pytest.raises(InputError, match="no tensor 'nope'"):
            reader.get("nope")


def test_tilde_and_hf_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    save_file({"a": torch.ones(2)}, tmp_path / "x.safetensors")
    assert resolve_model_path("~/x.safetensors") == (tmp_path / "x.safetensors").resolve()
    cache, commit = tmp_path / "hub", "0123456789abcdef0123456789abcdef01234567"
    snap = cache / "models--org--tiny" / "snapshots" / commit
    snap.mkdir(parents=True)
    (cache / "models--org--tiny" / "refs").mkdir()
    (cache / "models--org--tiny" / "refs" / "main").write_text(commit)
    save_file({"a": torch.ones(2)}, snap / "model.safetensors")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.chdir(tmp_path)
    for ref in ("org/tiny", f"org/tiny@{commit}"):
        reader = open_model(ref)
        assert reader.label == ref and torch.equal(reader.get("a"), torch.ones(2))
    with pytest.raises(InputError) as err:
        open_model("org/missing")
    assert str(err.value) == ("Model 'org/missing' is neither a file or folder here nor in the local Hugging "
                              f"Face cache (HF_HUB_CACHE={cache}), and downloads are off: pass "
                              f"--allow-download (in the app: allow downloads from the Hub in the settings) "
                              f"to fetch it from the Hub.")


class NotATensor:
    pass


def test_bad_inputs_name_the_file(tmp_path, sharded):
    def fails(ref, *fragments):
        with pytest.raises(InputError) as err:
            open_model(str(ref))
        for fragment in fragments:
            assert fragment in str(err.value)

    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "config.json").write_text("{}")
    fails(tmp_path / "empty", "has no model weights", str(tmp_path / "empty"))
    shard = sharded / "model-00002-of-00003.safetensors"
    size = os.path.getsize(shard)
    n = int.from_bytes(shard.read_bytes()[:8], "little")
    os.truncate(shard, size - 10)
    fails(sharded, f"model-00002-of-00003.safetensors in {sharded} is truncated: header says "
          f"{size - 8 - n} bytes of data, file has {size - 18 - n}.")
    (tmp_path / "garbage.safetensors").write_bytes((20).to_bytes(8, "little") + b"x" * 30)
    fails(tmp_path / "garbage.safetensors", "garbage.safetensors", "corrupt header")
    (tmp_path / "huge.safetensors").write_bytes((10**12).to_bytes(8, "little") + b"{}")
    fails(tmp_path / "huge.safetensors", "huge.safetensors", "corrupt header")
    (tmp_path / "tiny.safetensors").write_bytes(b"abc")
    save_file({"a": torch.ones(3)}, tmp_path / "extra.safetensors")
    with open(tmp_path / "extra.safetensors", "ab") as f:
        f.write(b"junk")
    fails(tmp_path / "extra.safetensors", "extra.safetensors", "4 bytes follow")
    header = {"a": {"dtype": "F32", "shape": [2], "data_offsets": [8, 16]}}
    raw = json.dumps(header).encode()
    (tmp_path / "gap.safetensors").write_bytes(len(raw).to_bytes(8, "little") + raw + bytes(16))
    fails(tmp_path / "gap.safetensors", "gap.safetensors", "gap at byte 0")
    fails(tmp_path / "tiny.safetensors", "tiny.safetensors")
    shard.unlink()
    fails(sharded, "model.safetensors.index.json", "model-00002-of-00003.safetensors", "missing")
    torch.save({"w": torch.ones(2), "evil": NotATensor()}, tmp_path / "evil.bin")
    fails(tmp_path / "evil.bin", f"evil.bin in {tmp_path} contains Python objects that are not "
          "plain tensors; refusing to unpickle it.")
    (tmp_path / "broken.bin").write_bytes(b"not a zip")
    fails(tmp_path / "broken.bin", "broken.bin", "not a readable PyTorch checkpoint")
    fails(tmp_path / "nowhere", "Model '", "not found")


PLAN_TENSORS = sample_tensors()
PLAN = [(n, tuple(t.shape), t.dtype) for n, t in PLAN_TENSORS.items()]


@pytest.mark.parametrize("cls", [ShardedWriter, AsyncShardedWriter])
def test_writer_round_trip_out_of_order(tmp_path, cls):
    out = tmp_path / "out"
    with cls(out, PLAN, max_shard_bytes=300, metadata={"merged_by": "test"}) as w:
        order = list(PLAN_TENSORS)
        random.Random(1).shuffle(order)
        for name in order:
            w.write(name, PLAN_TENSORS[name])
        paths = w.finish()
    n = len(w.shard_files)
    assert n == len(plan_shards(PLAN, 300)) >= 3
    assert w.shard_files == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)]
    assert [p.name for p in paths] == w.shard_files + ["model.safetensors.index.json"]
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == w.total_bytes == sum(
        t.nbytes for t in PLAN_TENSORS.values())
    assert list(index["weight_map"]) == list(PLAN_TENSORS)
    loaded = {}
    for file in w.shard_files:
        with safe_open(str(out / file), "pt") as f:
            assert f.metadata() == {"format": "pt", "merged_by": "test"}
            assert set(f.keys()) == {k for k, v in index["weight_map"].items() if v == file}
        loaded.update(load_file(out / file))
    for name, t in PLAN_TENSORS.items():
        assert bits_equal(loaded[name], t), name
    reader = open_model(str(out))
    assert all(bits_equal(reader.get(n), t) for n, t in PLAN_TENSORS.items())


def test_header_alignment_and_single_shard(tmp_path):
    with ShardedWriter(tmp_path, PLAN, max_shard_bytes=10**9) as w:
        for name, t in PLAN_TENSORS.items():
            w.write(name, t)
        assert [p.name for p in w.finish()] == ["model.safetensors"]
    raw = (tmp_path / "model.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    assert n % 8 == 0 and raw[8:9] == b"{"
    assert not (tmp_path / "model.safetensors.index.json").exists()


def test_shard_limit_smaller_than_a_tensor():
    plan = [("a", (10,), torch.float32), ("big", (100,), torch.float32), ("c", (5,), torch.float32),
            ("d", (5,), torch.float32)]
    assert plan_shards(plan, 100) == [["a"], ["big"], ["c", "d"]]
    assert plan_shards(plan, 10**6) == [["a", "big", "c", "d"]]
    assert plan_shards([], 100) == [[]]


def test_writer_checks_the_plan(tmp_path):
    w = ShardedWriter(tmp_path, PLAN, max_shard_bytes=200)
    with pytest.raises(ValueError, match="embed.weight"):
        w.write("embed.weight", PLAN_TENSORS["embed.weight"].float())
    with pytest.raises(ValueError, match="not in the output plan"):
        w.write("other", torch.ones(1))
    w.write("layers.0.w", PLAN_TENSORS["layers.0.w"])
    with pytest.raises(ValueError, match="twice"):
        w.write("layers.0.w", PLAN_TENSORS["layers.0.w"])
    with pytest.raises(OutputError, match="tensor 'embed.weight' was never written"):
        w.finish()


def test_disk_full_fails_before_writing(tmp_path, monkeypatch):
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**12, 10**12, 4_500_000_000))
    plan = [("w", (3_000_000_000,), torch.float32)]
    with pytest.raises(OutputError) as err:
        ShardedWriter(tmp_path / "out", plan, max_shard_bytes=5 * 10**9)
    # the writer fills a temporary folder: the sentence names the folder beside it, the one the user chose
    message = str(err.value)
    assert message.startswith(f"Not enough disk space in {tmp_path} (the disk mounted at /"), message
    assert message.endswith("): the output needs 12.0 GB, 4.5 GB free."), message
    assert list((tmp_path / "out").iterdir()) == []


def test_async_writer_reraises_write_errors(tmp_path, monkeypatch):
    w = AsyncShardedWriter(tmp_path, PLAN, max_shard_bytes=200, queue_size=1)

    def broken(fd, data, offset):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(writer_mod, "_pwrite", broken)
    with pytest.raises(OutputError, match="Input/output error"):
        for name, t in PLAN_TENSORS.items():
            w.write(name, t)
        w.finish()
    w.abort()
    assert not w._thread.is_alive()


@pytest.mark.parametrize("text,size", [
    ("5GB", 5 * 10**9), ("500MB", 500 * 10**6), ("1.5G", 1_500_000_000), ("2e9", 2 * 10**9),
    ("5GiB", 5 * 2**30), ("100", 100), (" 2 gb ", 2 * 10**9), ("5B", 5 * 10**9), (4096, 4096),
    ("1KiB", 1024), ("0.5TB", 5 * 10**11)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["", "GB", "5XB", "five", "0", "-1GB", "5iB"])
def test_parse_size_rejects(text):
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


@pytest.mark.slow
def test_transformers_round_trip(tmp_path):
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                      num_attention_heads=4, num_key_value_heads=2,
                                      vocab_size=128, max_position_embeddings=64)
    model = transformers.LlamaForCausalLM(config).eval()
    model.save_pretrained(tmp_path / "src", max_shard_size="20KB")
    state = model.state_dict()
    reader = open_model(str(tmp_path / "src"))
    assert reader.num_shards > 1 and reader.config["model_type"] == "llama"
    assert set(reader.tensors) == set(state)
    assert all(torch.equal(reader.get(n), t) for n, t in state.items())

    out = tmp_path / "out"
    plan = [(n, tuple(t.shape), t.dtype) for n, t in state.items()]
    with AsyncShardedWriter(out, plan, max_shard_bytes=30_000) as w:
        for name in reversed(list(state)):
            w.write(name, reader.get(name))
        assert len(w.finish()) > 2
    shutil.copy(tmp_path / "src" / "config.json", out / "config.json")
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    ids = torch.randint(0, 128, (2, 9))
    with torch.no_grad():
        assert torch.equal(model(ids).logits, loaded(ids).logits)
