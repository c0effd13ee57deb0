"""The compute engine: torch, safetensors and transformers only. Never imports Qt."""
