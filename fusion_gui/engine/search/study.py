"""The search's optuna study: its storage (an RDB URL; by default a SQLite file in the output folder),
its sampler, and reading its trials back (the app lists every worker's trials live from here).

Several processes share one study through one storage: optuna gives each trial a unique number.
A trial records the worker that ran it ("host:pid"); a trial left RUNNING by a killed process on this
host is marked failed when the search resumes (`fail_orphans`), so it is never shown as a result.
"""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path

from fusion_gui.engine.errors import InputError
from fusion_gui.engine.search.genome import Dimension, grid_points, start_point
from fusion_gui.engine.search.settings import SearchSettings

STORAGE_FILE = "search.sqlite"
# what must not change when a search is resumed or joined (the budget, device and storage may)
_SAME_ON_RESUME = ("method", "base", "models", "fixed", "dtype", "tune", "layer_granularity", "objectives", "combine",
                   "examples", "held_out", "sampler", "grid_steps", "seed")


def storage_url(settings: SearchSettings, out_dir: str | Path | None) -> str:
    if settings.storage:
        return settings.storage
    if out_dir is None:
        raise InputError("Give an output folder, or a storage URL in the settings, so the search knows its study.")
    return f"sqlite:///{Path(out_dir).absolute() / STORAGE_FILE}"


def storage(url: str):
    """An optuna RDB storage; SQLite waits for another process's write instead of failing at once."""
    import optuna

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    try:
        return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
    except Exception as err:  # noqa: BLE001 - sqlalchemy's errors are many; the sentence is the same
        raise InputError(f"Cannot open the search storage {url}: {err}") from None


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def sampler(settings: SearchSettings, dims: list[Dimension]):
    import optuna

    name, seed = settings.chosen_sampler, settings.seed
    if name == "cmaes":
        # CMA-ES samples the whole vector together; with one dimension it falls back to random sampling
        return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False,
                                            independent_sampler=optuna.samplers.RandomSampler(seed=seed))
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=seed)
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=seed, multivariate=True)
    return optuna.samplers.RandomSampler(seed=seed)  # random; grid points come from the queue


def open_study(settings: SearchSettings, url: str, directions: list[str], dims: list[Dimension], mode: str):
    """mode "new": a study that must not exist yet (or exists without trials); "resume" and "worker": an
    existing one (optuna loads it from the storage)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    store = storage(url)
    names = [s.study_name for s in optuna.get_all_study_summaries(store)]
    exists = settings.study_name in names
    if mode != "new" and not exists:
        raise InputError(f"There is no search {settings.study_name!r} in {url} to "
                         f"{'join' if mode == 'worker' else 'resume'}; start it first.")
    study = optuna.create_study(storage=store, study_name=settings.study_name, directions=directions,
                                sampler=sampler(settings, dims), load_if_exists=True)
    if [d.name.lower() for d in study.directions] != [d.lower() for d in directions]:
        raise InputError(f"The stored search {settings.study_name!r} has other objectives; use another output "
                         f"folder or study_name.")
    stored = study.user_attrs.get("settings")
    if mode != "new" and stored:
        changed = [k for k in _SAME_ON_RESUME if stored.get(k) != settings.to_dict().get(k)]
        if changed:
            raise InputError(f"These settings differ from the stored search's ({', '.join(changed)}): resume or join "
                             f"it with the settings it started with, or start a new search.")
    if mode == "new":
        if exists and study.trials:
            raise InputError(f"{url} already holds search {settings.study_name!r} with {len(study.trials)} "
                             f"trials: resume it with --resume, or choose another output folder.")
        study.set_user_attr("settings", settings.to_dict())
        study.set_user_attr("dimensions", [d.name for d in dims])
        if settings.chosen_sampler == "grid":
            for point in grid_points(dims, settings.grid_steps):
                study.enqueue_trial(point, user_attrs={"grid": True})
        elif start_point(dims) is not None:  # the known recipe is trial 0: the search can only improve on it
            study.enqueue_trial(start_point(dims), user_attrs={"start": True})
    return study


def fail_orphans(study) -> list[int]:
    """Mark failed the RUNNING trials of processes on this host that no longer run (a killed search)."""
    from optuna.trial import TrialState

    host, failed = socket.gethostname(), []
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = trial.user_attrs.get("worker", "")
        name, _, pid = worker.rpartition(":")
        if name == host and pid.isdigit() and not _alive(int(pid)):
            study._storage.set_trial_user_attr(trial._trial_id, "error", "its process ended before it finished")
            study._storage.set_trial_state_values(trial._trial_id, TrialState.FAIL)
            failed.append(trial.number)
    return failed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process is starting: a trial it "runs" is an earlier process's with the same id
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class TrialRow:
    """One trial as the app's table shows it."""

    number: int
    state: str  # "complete" | "running" | "failed" | "waiting" | "pruned"
    params: dict
    scores: dict  # objective name -> score on the search examples
    values: tuple[float, ...]
    seconds: float | None
    worker: str
    error: str


def trial_row(trial) -> TrialRow:
    seconds = trial.duration.total_seconds() if trial.duration is not None else None
    return TrialRow(trial.number, trial.state.name.lower().replace("fail", "failed"), dict(trial.params),
                    dict(trial.user_attrs.get("scores", {})), tuple(trial.values or ()), seconds,
                    trial.user_attrs.get("worker", ""), trial.user_attrs.get("error", ""))


def list_trials(url: str, study_name: str = "search") -> list[TrialRow]:
    """Every trial of a stored study, by number, whichever worker ran it (for a live table)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    try:
        study = optuna.load_study(study_name=study_name, storage=storage(url))
    except KeyError:
        raise InputError(f"There is no search {study_name!r} in {url}.") from None
    return [trial_row(t) for t in study.get_trials(deepcopy=False)]


def complete_trials(study) -> list:
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
