"""Looking inside models: per-tensor and per-layer metrics (analysis), model-to-model diffs (diff), one
tensor in depth across models (tensor, drawing on pictures), N fine-tunes compared (similarity) and models
of different depths matched (depth)."""
