"""The merge pipeline, in the order it runs: recipe (settings: a parameter's value per tensor) ->
plan (check everything first; tasks lists every output tensor; memory estimates what the job holds
and measures it) -> run (the method's prepare step,
then stream tensors) -> output (config, tokenizer, model card, atomic publish); vocab (with
model_tokenizer and vocab_compare) and chat_template build the output tokenizer.

`merge`, `plan_merge` and `MergeOptions` are importable from here; they load lazily so that reading a
recipe does not import torch.
"""

from __future__ import annotations

__all__ = ["MergeOptions", "merge", "plan_merge"]


def __getattr__(name: str):
    if name == "merge":
        from fusion_gui.engine.merge.run import merge

        return merge
    if name in ("plan_merge", "MergeOptions"):
        import fusion_gui.engine.merge.plan as plan_module

        return getattr(plan_module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
