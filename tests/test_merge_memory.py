"""A merge's memory figures describe the job itself: the plan's estimate, the result's peak, and the
budget within which TIES-like methods sort several models' changes side by side."""

import importlib.util
import threading
import time
from pathlib import Path

import torch

from fusion_gui.engine.merge import merge
from fusion_gui.engine.merge.memory import JobMemory, side_by_side_widths
from fusion_gui.engine.merge.plan import MergeOptions, plan_merge
from fusion_gui.engine.merge.recipe import recipe_from_dict
from fusion_gui.engine.merge.tasks import Source, TensorTask
from fusion_gui.engine.methods import get_method, sparsify
from fusion_gui.engine.methods.base import side_by_side
from tests.helpers import drain

MB = 1 << 20


def _touched(nbytes: int) -> torch.Tensor:
    """A buffer whose pages are all resident."""
    return torch.ones(nbytes // 4, dtype=torch.float32)


def _ties(models, base) -> dict:
    return {"merge_method": "ties", "base_model": str(base), "dtype": "bfloat16", "models": [
        {"model": str(m), "parameters": {"weight": 0.5, "density": 0.5}} for m in models]}


def test_estimate_is_the_same_whatever_the_process_holds(llama_family, tmp_path):
    base, a, b = llama_family
    recipe = recipe_from_dict(_ties([a, b], base))
    first = plan_merge(recipe, tmp_path / "out")
    first.close()
    held = _touched(500 * MB)  # e.g. models loaded in another tab of the app
    second = plan_merge(recipe, tmp_path / "out")
    second.close()
    del held
    assert second.summary.estimated_peak_bytes == first.summary.estimated_peak_bytes
    # and it is the tiny merge's own memory, not the process's hundreds of MB
    assert first.summary.estimated_peak_bytes < 100 * MB


def test_result_peak_is_the_jobs_own(llama_family, tmp_path):
    base, a, b = llama_family
    recipe = recipe_from_dict(_ties([a, b], base))
    drain(merge(recipe, tmp_path / "warm"))  # first-use imports are not what this test is about
    held = _touched(500 * MB)
    result, _ = drain(merge(recipe, tmp_path / "out"))
    del held
    assert result.peak_bytes < 100 * MB  # a few MB of tensors; the 500 MB held before is not counted


def test_job_memory_sees_a_buffer_allocated_and_freed_inside_the_job():
    memory = JobMemory(interval=0.001).start()
    buffer = _touched(200 * MB)
    time.sleep(0.05)
    del buffer
    assert memory.stop() >= 180 * MB


def _task(numel: int, inputs: int) -> TensorTask:
    sources = [Source(f"m{k}", "w", {}) for k in range(inputs)]
    return TensorTask("w", sources, 0, {}, (numel,), torch.bfloat16, torch.bfloat16, True, None)


def test_side_by_side_widths_follow_the_budget():
    ties = get_method("ties")
    tasks = [_task(1 << 20, 4), _task(1 << 24, 4)]
    held = [10 * MB, 200 * MB]
    per_sort = ties.side_by_side_scratch(2)
    # a budget of the loop's own peak: the small tensor's three sorts fit below it, the big one's do not
    assert side_by_side_widths(ties, tasks, held, 200 * MB, workers=8) == [3, 1]
    # a budget with room for exactly one more sort of the big tensor
    assert side_by_side_widths(ties, tasks, held, 200 * MB + int(per_sort * (1 << 24)), workers=8) == [3, 2]
    # no room: one at a time everywhere; never more than the threads
    assert side_by_side_widths(ties, tasks, held, 0, workers=8) == [1, 1]
    assert side_by_side_widths(ties, tasks, held, 1 << 40, workers=2) == [2, 2]
    assert side_by_side_widths(get_method("linear"), tasks, held, 1 << 40, workers=8) == [1, 1]


def test_small_budget_runs_sorts_one_at_a_time_with_identical_results(monkeypatch):
    ties = get_method("ties")
    g = torch.Generator().manual_seed(0)
    base = torch.randn(512, 256, generator=g).to(torch.bfloat16)
    tensors = [base] + [(base.float() + 0.01 * torch.randn(base.shape, generator=g)).to(torch.bfloat16)
                        for _ in range(3)]
    per_model = [{}] + [{"weight": 0.5, "density": 0.3}] * 3
    running, most = 0, 0
    lock = threading.Lock()
    original = sparsify.magnitude

    def counted(*args, **kwargs):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05)  # long enough for sorts allowed side by side to overlap
        try:
            return original(*args, **kwargs)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(sparsify, "magnitude", counted)
    results = {}
    for width in (1, 2, None):  # None: outside a merge, every model's sort at once (pool of 2 or more threads)
        most = 0
        with side_by_side(width):
            results[width] = ties.fn(tensors, 0, {}, per_model, None).tensor
        assert most == width if width is not None else most >= 2
    assert torch.equal(results[1], results[2]) and torch.equal(results[1], results[None])


def test_default_budget_keeps_the_peak_of_one_sort_at_a_time(llama_family, tmp_path):
    base, a, b = llama_family
    recipe = recipe_from_dict(_ties([a, b], base))
    plan = plan_merge(recipe, tmp_path / "out")
    roomy = plan_merge(recipe, tmp_path / "out", MergeOptions(memory_budget=1 << 40))
    plan.close(), roomy.close()
    assert max(roomy.side_by_side) == 2 and max(plan.side_by_side) <= 2
    assert plan.summary.estimated_peak_bytes <= roomy.summary.estimated_peak_bytes


def _sparse_models():
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "sparse_models.py"
    spec = importlib.util.spec_from_file_location("sparse_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_70b_linear_merge_estimate_fits_a_32gb_workstation(tmp_path):
    sparse = _sparse_models()
    a = sparse.write_sparse_model(tmp_path / "a")
    b = sparse.write_sparse_model(tmp_path / "b")
    data = {"merge_method": "linear", "dtype": "bfloat16",
            "models": [{"model": str(m), "parameters": {"weight": 0.5}} for m in (a, b)]}
    plan = plan_merge(recipe_from_dict(data), tmp_path / "out")
    plan.close()
    embed = 128256 * 8192 * 2  # the largest tensor, bf16
    # at least both inputs' embeddings and the output's, and room to spare on 32 GB
    assert 3 * embed < plan.summary.estimated_peak_bytes < 16e9
