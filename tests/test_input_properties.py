"""Property tests of the readers of untrusted input: any bytes or any YAML give a valid result or an
InputError (one sentence), never another exception, never a hang, never a huge allocation."""

import json
import struct
import tracemalloc
from datetime import timedelta
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fusion_gui.engine.distill.config import config_from_dict, load_config
from fusion_gui.engine.errors import InputError
from fusion_gui.engine.io.reader import find_weight_files, read_safetensors_header
from fusion_gui.engine.merge.recipe import TOP_KEYS, dump_recipe, load_recipe, recipe_from_dict

# deadline: a hang guard, far above the milliseconds one example takes; no example database in the repo
PROPERTY = settings(max_examples=150, deadline=timedelta(seconds=10), database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                    max_leaves=24)
ENTRY = st.fixed_dictionaries({
    "dtype": st.sampled_from(["F32", "BF16", "I8", "BOOL", "F4", ""]) | JSON,
    "shape": st.lists(st.integers(-2, 6) | st.floats() | st.text(max_size=2), max_size=3) | JSON,
    "data_offsets": st.lists(st.integers(-4, 200) | st.floats(), max_size=3) | JSON})
HEADER = st.one_of(st.dictionaries(st.text(max_size=6), ENTRY, max_size=4), JSON).map(lambda v: json.dumps(v).encode())


def _safetensors(header: bytes, tail: bytes, claimed: int | None) -> bytes:
    return struct.pack("<Q", len(header) if claimed is None else claimed) + header + tail


def _one_sentence(err: InputError) -> None:
    text = str(err)
    assert text and "\n" not in text and "Traceback" not in text


@PROPERTY
@given(st.one_of(st.binary(max_size=80),
                 st.builds(_safetensors, HEADER, st.binary(max_size=64), st.none() | st.integers(0, 2**64 - 1))))
@example(_safetensors(b'{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,Infinity]}}', b"", None))
@example(_safetensors(b'{"a":{"dtype":"F32","shape":[-1,-4],"data_offsets":[0,16]}}', b"\0" * 16, None))
@example(_safetensors(b"[" * 100_000, b"", None))
def test_safetensors_header_reader_gives_tensors_or_an_input_error(tmp_path_factory, data):
    path = tmp_path_factory.getbasetemp() / "property.safetensors"
    path.write_bytes(data)
    try:
        infos, meta = read_safetensors_header(path)
    except InputError as err:
        _one_sentence(err)
        return
    end = 0
    for info in sorted(infos.values(), key=lambda i: i.offset):  # a valid result: tensors tile the data
        assert all(d >= 0 for d in info.shape) and info.offset >= 8
        end = max(end, info.offset + info.nbytes)
    assert end <= len(data)


def test_a_header_claiming_a_huge_length_is_refused_without_allocating_it(tmp_path):
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 2**62) + b'{"a":1}')
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="corrupt header"):
            read_safetensors_header(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1_000_000


WEIGHT_MAP = st.dictionaries(st.text(max_size=6), JSON | st.sampled_from(
    ["model-00001-of-00001.safetensors", "../elsewhere.safetensors", "/etc/hostname", "", "a\0b"]), max_size=4)


@PROPERTY
@given(st.one_of(st.binary(max_size=80), JSON.map(lambda v: json.dumps(v).encode()),
                 WEIGHT_MAP.map(lambda m: json.dumps({"weight_map": m}).encode())))
@example(json.dumps({"weight_map": {"a": ["x"]}}).encode())
@example(json.dumps({"weight_map": {"a": 3}}).encode())
@example(json.dumps({"weight_map": {"a": "/etc/hostname"}}).encode())
@example(b'{"weight_map":' + b"[" * 100_000)
def test_shard_index_reader_gives_shards_or_an_input_error(tmp_path_factory, data):
    folder = tmp_path_factory.mktemp("index")
    (folder / "model.safetensors.index.json").write_bytes(data)
    (folder / "model-00001-of-00001.safetensors").write_bytes(b"")  # a shard the index may name
    try:
        files, weight_map = find_weight_files(folder)
    except InputError as err:
        _one_sentence(err)
        return
    assert all(f.resolve().parent == folder.resolve() for f in files)  # never a file outside the model


RECIPE_LIKE = st.dictionaries(st.sampled_from(sorted(TOP_KEYS)) | st.text(max_size=4), JSON, max_size=6)
DISTILL_LIKE = st.dictionaries(st.sampled_from(["teacher", "student", "data", "losses", "training", "temperature"]),
                               JSON | st.dictionaries(st.sampled_from(["forward_kl", "ce", "taid", "max_steps",
                                                                       "path", "learning_rate", 1]), JSON, max_size=3),
                               max_size=6)
YAML_TEXT = st.one_of(st.text(max_size=80), (RECIPE_LIKE | DISTILL_LIKE | JSON).map(yaml.safe_dump))
TRICKY_YAML = ["random_seed: 2019-02-30\n", "[" * 10_000 + "\n", "a: &x [*x]\n", "losses: {1: 2, a: 3}\n",
               "merge_method: linear\nmodels: [x]\nparameters: {w: [{filter: 3, value: 1}]}\n",
               "teacher: a\nstudent: b\ndata: c\nlosses: {ce: .nan, forward_kl: 1}\n",
               "teacher: a\nstudent: b\ndata: c\nlosses: {ce: 1}\ntemperature: 1e999\n"]


@PROPERTY
@given(YAML_TEXT)
def test_recipe_parser_gives_a_recipe_or_an_input_error(text):
    _check_recipe(text)


@pytest.mark.parametrize("text", TRICKY_YAML)
def test_recipe_parser_on_inputs_that_broke_it(text):
    _check_recipe(text)


def _check_recipe(text: str) -> None:
    try:
        recipe = load_recipe(text + "\n")
    except InputError as err:
        _one_sentence(err)
        return
    assert recipe_from_dict(yaml.safe_load(dump_recipe(recipe))) == recipe  # a valid result round-trips


@PROPERTY
@given(RECIPE_LIKE)
def test_recipe_from_any_mapping_gives_a_recipe_or_an_input_error(data):
    try:
        recipe_from_dict(data)
    except InputError as err:
        _one_sentence(err)


@PROPERTY
@given(st.one_of(YAML_TEXT.map(str.encode), st.binary(max_size=80)))
def test_distill_config_parser_gives_a_config_or_an_input_error(tmp_path_factory, data):
    _check_distill(tmp_path_factory.getbasetemp() / "property-distill.yml", data)


@pytest.mark.parametrize("text", TRICKY_YAML + ["\udcff"])
def test_distill_config_parser_on_inputs_that_broke_it(tmp_path, text):
    _check_distill(tmp_path / "distill.yml", text.encode("utf-8", "surrogateescape"))


def _check_distill(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        config = load_config(path)
    except InputError as err:
        _one_sentence(err)
        return
    assert config.losses and all(s.weight >= 0 for s in config.losses) and config.temperature > 0


@PROPERTY
@given(DISTILL_LIKE)
def test_distill_config_from_any_mapping_gives_a_config_or_an_input_error(data):
    try:
        config_from_dict(data)
    except InputError as err:
        _one_sentence(err)


# --- evaluation task files --------------------------------------------------------------------------

TASK_LINE = st.one_of(
    JSON.map(json.dumps),
    st.fixed_dictionaries({}, optional={"query": JSON, "question": JSON, "prompt": JSON, "choices": JSON,
                                        "answer": JSON, "gold": JSON}).map(json.dumps),
    st.text(max_size=40))


@PROPERTY
@given(st.one_of(st.binary(max_size=200), st.lists(TASK_LINE, max_size=6).map(lambda ls: "\n".join(ls).encode())))
def test_task_file_reader_gives_examples_or_an_input_error(tmp_path_factory, data):
    """Any bytes in a JSONL task file: examples, or one sentence naming the file (and the line)."""
    from fusion_gui.engine.evaluate.task_files import load_task, read_examples

    path = tmp_path_factory.mktemp("task") / "task.jsonl"
    path.write_bytes(data)
    try:
        examples = read_examples(load_task(path))
    except InputError as err:
        _one_sentence(err)
        return
    assert isinstance(examples, list)
