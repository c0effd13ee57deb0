"""Looking inside models: per-tensor and per-layer metrics (analysis) and model-to-model diffs."""
