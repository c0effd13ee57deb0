"""fusion_gui: merge and distill Hugging Face models, with live per-layer plots."""

__version__ = "0.1.0"
