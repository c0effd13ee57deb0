"""Reading and writing model weights: weight_files (formats), reader (one checkpoint), adapter (a
LoRA over its base), opener (open_model picks between them), writer (streaming sharded safetensors)."""

from fusion_gui.engine.io.opener import open_model
from fusion_gui.engine.io.reader import ModelReader
from fusion_gui.engine.io.weight_files import (
    SAFETENSORS_DTYPES,
    TensorInfo,
    dtype_size,
    read_safetensors_header,
    safetensors_dtype_name,
)
from fusion_gui.engine.io.resolve import resolve_model_path
from fusion_gui.engine.io.writer import (
    AsyncShardedWriter,
    ShardedWriter,
    format_size,
    parse_size,
    plan_shards,
    shard_name,
)

__all__ = [
    "SAFETENSORS_DTYPES", "ModelReader", "TensorInfo", "dtype_size", "open_model",
    "read_safetensors_header", "safetensors_dtype_name", "resolve_model_path",
    "AsyncShardedWriter", "ShardedWriter", "format_size", "parse_size", "plan_shards", "shard_name",
]
