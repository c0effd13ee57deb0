"""TIES's magnitude sorts run side by side only within the memory budget the plan computes."""

import math
import threading
import time

import torch

from fusion_gui.engine.methods import get_method, sparsify, task_arithmetic
from fusion_gui.engine.methods.base import SORT_BUDGET, SORT_BYTES


def _most_at_once(monkeypatch, budget):
    """Run TIES on 5 inputs (4 sorts); how many magnitude sorts ran at the same time, and the result."""
    running, most, lock = [0], [0], threading.Lock()
    magnitude = sparsify.magnitude

    def counted(*args, **kwargs):
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        time.sleep(0.05)  # long enough for the other threads to start theirs
        try:
            return magnitude(*args, **kwargs)
        finally:
            with lock:
                running[0] -= 1

    monkeypatch.setattr(sparsify, "magnitude", counted)
    monkeypatch.setattr(task_arithmetic.os, "cpu_count", lambda: 8)
    g = torch.Generator().manual_seed(0)
    tensors = [torch.randn(256, 512, generator=g) for _ in range(5)]
    params = {"normalize": True, "rescale": False, "lambda": 1.0} | ({SORT_BUDGET: budget} if budget else {})
    per_model = [{"weight": 0.5, "density": 0.5}] * 5
    result = get_method("ties").fn(tensors, 0, params, per_model, None)
    return most[0], result.tensor


def test_sorts_run_side_by_side_only_within_the_budget(monkeypatch):
    one_sort = 256 * 512 * SORT_BYTES
    alone, expected = _most_at_once(monkeypatch, None)  # no budget: one at a time
    within_one, a = _most_at_once(monkeypatch, one_sort)  # the budget the largest tensor sets
    within_two, b = _most_at_once(monkeypatch, 2 * one_sort)
    within_all, c = _most_at_once(monkeypatch, 10 * one_sort)
    assert (alone, within_one, within_two, within_all) == (1, 1, 2, 4)
    for got in (a, b, c):
        assert torch.equal(got, expected)  # the same bits whatever runs at once


def test_the_plan_hands_out_one_sort_of_the_largest_tensor(llama_family):
    from fusion_gui.engine.merge import MergeOptions, plan_merge
    from fusion_gui.engine.merge.recipe import recipe_from_dict

    base, a, b = llama_family
    models = [{"model": str(m), "parameters": {"weight": 0.5, "density": 0.5}} for m in (a, b)]
    for method in ("ties", "task_arithmetic"):
        plan = plan_merge(recipe_from_dict({"merge_method": method, "base_model": str(base), "models": models}),
                          base.parent / "never-written", MergeOptions(device="cpu"))
        plan.close()
        largest = max(math.prod(t.shape) for t in plan.tasks)
        budgets = {t.params.get(SORT_BUDGET) for t in plan.tasks if t.floating}
        assert budgets == ({largest * SORT_BYTES} if method == "ties" else {None})
