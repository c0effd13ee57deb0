"""Reading and writing model weights: lazy readers, streaming sharded safetensors writers."""

from fusion_gui.engine.io.reader import (
    SAFETENSORS_DTYPES,
    ModelReader,
    TensorInfo,
    dtype_size,
    open_model,
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
