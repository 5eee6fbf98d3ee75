"""Run a search: trials in worker processes, resume, HParams, plots, the winner and its test figure.

The winner is the finished trial with the best *validation* figure (``metric``); nothing during the
search reads the test split. When the search is complete (every grid point, or the Optuna budget),
the winner is refitted once by :func:`~tfrs_movies.training.experiment.run` (on test) into
``<tune_dir>/best/`` (a normal run directory, test figures in its ``metrics.json``) and summarised in
``<tune_dir>/best.json``; a later invocation with the same winner reuses it instead of reading test again.

Each trial is handed the pruner and the per-epoch curves of the trials finished so far
(:mod:`tfrs_movies.tuning.pruning`); one the pruner stops is recorded as ``pruned`` and not run again.
Progress: one line per trial; on a terminal, a bar over the trials below them.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tfrs_movies import config as C
from tfrs_movies.evaluation.metrics_table import direction, lower_is_better
from tfrs_movies.io import atomic_write_json
from tfrs_movies.progress import Progress
from tfrs_movies.tuning import hparams
from tfrs_movies.tuning.grid import SearchSpace, expand_grid, overrides_for, trial_id
from tfrs_movies.tuning.plots import (
    param_importances,
    plot_curves,
    plot_heatmap,
    plot_importance,
    varied_params,
)
from tfrs_movies.tuning.pruning import Curve, Pruning, curve_of, default_pruner, finished_curves
from tfrs_movies.tuning.search import OptunaSearch, study_direction
from tfrs_movies.tuning.store import FAILED, OK, PRUNED, TuningDir
from tfrs_movies.tuning.trial import init_worker, run_trial


@dataclass
class TuneOptions:
    """How to search. ``max_trials`` caps the trials *started by this invocation* (stop early, resume
    later); ``trials`` is the Optuna budget (finished trials of the space in the tuning directory)."""

    tune_dir: Path
    metric: str
    search: str = "grid"
    trials: int | None = None
    max_trials: int | None = None
    workers: int = 1
    threads: int | None = None
    final_test: bool = True
    heatmap: tuple[str, str] | None = None
    seed: int = 42
    verbose: bool = False  # worker processes' start-up log lines (tfrs_movies.logs)
    progress: bool = True  # a bar over the trials on a terminal


@dataclass
class TuneResult:
    tune_dir: Path
    ran: list[str] = field(default_factory=list)  # trial ids run by this invocation
    reused: int = 0  # finished trials found and not run again
    failed: list[str] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)  # trial ids the pruner stopped in this invocation
    complete: bool = False
    winner: dict[str, Any] | None = None
    best: dict[str, Any] | None = None  # best.json's content, once the search is complete
    plots: list[Path] = field(default_factory=list)


@dataclass
class _Job:
    point: dict[str, Any]
    overrides: dict[str, Any]
    tid: str
    handle: Any = None  # the Optuna trial, if any


class _InlineExecutor(Executor):
    """One worker: run each trial in this process (no start-up cost; used by tests and --workers 1)."""

    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> Future:
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as err:  # reported as a failed trial, as a worker's exception would be
            future.set_exception(err)
        return future


def _executor(workers: int, threads: int, verbose: bool) -> Executor:
    if workers <= 1:
        return _InlineExecutor()
    # spawn: TensorFlow is not fork-safe, and each worker sets its own thread limits before it starts.
    context = multiprocessing.get_context("spawn")
    return ProcessPoolExecutor(workers, mp_context=context, initializer=init_worker,
                               initargs=(threads, verbose))  # fmt: skip


class _GridSource:
    """Grid points in order, finished and pruned ones skipped."""

    def __init__(self, space: SearchSpace, finished: dict[str, dict], pruned: dict[str, dict]) -> None:
        self.jobs = []
        self.reused = 0
        for point in expand_grid(space):
            overrides = overrides_for(space, point)
            tid = trial_id(overrides)
            if tid in finished or tid in pruned:
                self.reused += 1
            else:
                self.jobs.append(_Job(point, overrides, tid))
        self.total = space.size()
        self.left = len(self.jobs)

    def next(self, busy: set[str]) -> _Job | None:
        return self.jobs.pop(0) if self.jobs else None

    def done(self, job: _Job, record: dict[str, Any], metric: str) -> None:
        if record["status"] in (OK, PRUNED):
            self.left -= 1

    def complete(self) -> bool:
        return self.left == 0


class _OptunaSource:
    """Optuna's TPE over the space until ``budget`` trials of it are finished in the tuning directory."""

    MAX_REPEATS = 200  # consecutive suggestions of finished points: the space is used up

    def __init__(self, space: SearchSpace, finished: dict[str, dict], pruned: dict[str, dict], metric: str,
                 budget: int, seed: int):  # fmt: skip
        self.search = OptunaSearch(space, study_direction(metric), seed)
        self.space, self.metric, self.budget = space, metric, budget
        self.finished = {tid: r for tid, r in finished.items() if metric in r["valid"]}
        self.pruned = dict(pruned)
        value = lambda r: r["valid"][metric] if r["status"] == OK else None  # noqa: E731  (None: pruned)
        self.known = {tid for tid, r in {**self.finished, **self.pruned}.items()
                      if self.search.add_finished(r["params"], value(r), curve_of(r, metric))}  # fmt: skip
        self.reused = len(self.known)
        self.exhausted = False
        self.failures = 0

    def next(self, busy: set[str]) -> _Job | None:
        for _ in range(self.MAX_REPEATS):
            if len(self.known) + len(busy) >= self.budget or self.failures >= self.budget:
                return None
            handle, point = self.search.ask()
            overrides = overrides_for(self.space, point)
            tid = trial_id(overrides)
            if tid in self.finished:  # asked again for a point already run: answer from its result
                self.search.tell(handle, self.finished[tid]["valid"][self.metric])
            elif tid in self.pruned:  # or one the pruner stopped: pruned again
                self.search.tell_pruned(handle, curve_of(self.pruned[tid], self.metric) or {})
            elif tid in busy:
                self.search.tell(handle, None)
            else:
                return _Job(point, overrides, tid, handle)
        self.exhausted = True
        return None

    def done(self, job: _Job, record: dict[str, Any], metric: str) -> None:
        if record["status"] == PRUNED:
            self.search.tell_pruned(job.handle, curve_of(record, metric) or {})
            self.pruned[job.tid] = record
            self.known.add(job.tid)
            return
        value = record["valid"].get(metric) if record["status"] == OK else None
        self.search.tell(job.handle, value)
        if value is not None:
            self.finished[job.tid] = record
            self.known.add(job.tid)
        else:
            self.failures += 1

    def complete(self) -> bool:
        return len(self.known) >= self.budget or self.exhausted


def choose_winner(records: list[dict[str, Any]], metric: str) -> dict[str, Any]:
    """The finished trial with the best validation ``metric`` (validation only; ties: the earlier one)."""
    scored = [r for r in records if r["status"] == OK and metric in r.get("valid", {})]
    if not scored:
        seen = sorted({k for r in records for k in r.get("valid", {})})
        raise ValueError(
            f"no finished trial has validation {metric!r} (figures: {', '.join(seen) or 'none'})"
        )
    sign = 1.0 if lower_is_better(metric) else -1.0
    return min(scored, key=lambda r: sign * float(r["valid"][metric]))


def _trial_config(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    config = C.merge(base, overrides)
    config["train"]["verbose"] = 0
    config["export"]["enabled"] = False  # trials are compared, not served: the winner's refit exports
    return config


def tune(base: dict[str, Any], space: SearchSpace, options: TuneOptions, say=print) -> TuneResult:
    """Run (or resume) the search in ``options.tune_dir``; returns what ran and, when complete, the best."""
    lower_is_better(options.metric)  # an unknown metric stops here, listing the known ones
    store = TuningDir(Path(options.tune_dir))
    store.root.mkdir(parents=True, exist_ok=True)
    store.check_base(base)
    for point in expand_grid(space)[:1]:  # a bad key stops here, naming it, before any trial runs
        C.merge(base, overrides_for(space, point))
    finished, pruned = store.finished(), store.pruned()
    if options.search == "optuna":
        budget = options.trials or space.size()
        source: Any = _OptunaSource(space, finished, pruned, options.metric, budget, options.seed)
        say(f"optuna: {source.reused} finished trials reused, budget {budget} trials")
        planned = max(0, budget - len(source.known))
    else:
        source = _GridSource(space, finished, pruned)
        say(f"grid: {source.total} trials, {source.reused} already finished, {source.left} to run")
        planned = source.left
    spec = space.pruner or default_pruner(options.search)
    if spec.enabled:
        say(f"pruner: {spec.name} (after {spec.n_startup_trials} finished trials, from epoch "
            f"{spec.n_warmup_steps + 1}; models trained by epochs only)")  # fmt: skip
    curves = list(finished_curves(list(finished.values()), options.metric))
    result = TuneResult(store.root, reused=source.reused)
    threads = options.threads or max(1, (os.cpu_count() or 1) // max(1, options.workers))
    executor = _executor(options.workers, threads, options.verbose)
    in_flight: dict[Future, tuple[_Job, float]] = {}
    started = 0
    if options.max_trials is not None:
        planned = min(planned, options.max_trials)
    bar = Progress("trials", planned, unit="trials", lines=False, enabled=options.progress)
    try:
        while True:
            while len(in_flight) < max(1, options.workers) and (
                options.max_trials is None or started < options.max_trials
            ):
                job = source.next({j.tid for j, _ in in_flight.values()})
                if job is None:
                    break
                trial_dir = store.prepare(job.tid)
                pruning = Pruning(spec, options.metric, tuple(curves))
                config = _trial_config(base, job.overrides)
                future = executor.submit(run_trial, config, str(trial_dir), pruning)
                in_flight[future] = (job, time.time())
                started += 1
            if not in_flight:
                break
            done, _ = wait(list(in_flight), return_when=FIRST_COMPLETED)
            for future in done:
                job, _ = in_flight.pop(future)
                record = _record(job, future, options.search)
                store.record(record)
                source.done(job, record, options.metric)
                bar.update(1)
                bar.note(_said(job, record, options.metric, result, curves), say)
    except BrokenProcessPool:
        say("a worker process died (out of memory?); re-run the same command to resume")
    except KeyboardInterrupt:
        say("interrupted: finished trials are kept; re-run the same command to resume")
        executor.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        bar.close()
    executor.shutdown(wait=True)
    return _finish(store, base, source, options, result, say)


def _said(job: _Job, record: dict[str, Any], metric: str, result: TuneResult, curves: list[Curve]) -> str:
    """Note a finished trial in ``result`` (and its curve in ``curves``); the line that says how it went."""
    if record["status"] == OK:
        result.ran.append(job.tid)
        curve = curve_of(record, metric)
        if curve:
            curves.append(curve)
        hparams.write_trial(result.tune_dir / "tensorboard", record)
        figure = record["valid"].get(metric)
        shown = f"{metric} {figure:.4f}" if figure is not None else "(no such figure)"
        return f"trial {job.tid} {_short(job.point)}: validation {shown}, {record['train_seconds']} s"
    if record["status"] == PRUNED:
        result.pruned.append(job.tid)
        curve = curve_of(record, metric) or {}
        last = f", validation {metric} {curve[max(curve)]:.4f}" if curve else ""
        return (f"trial {job.tid} {_short(job.point)}: pruned after epoch {record['pruned_at_epoch']}{last}, "
                f"{record['train_seconds']} s")  # fmt: skip
    result.failed.append(job.tid)
    return f"trial {job.tid} {_short(job.point)} FAILED: {record['error']}"


def _record(job: _Job, future: Future, search: str) -> dict[str, Any]:
    record: dict[str, Any] = {"trial_id": job.tid, "params": job.point, "overrides": job.overrides,
                              "search": search, "finished_at": time.time()}  # fmt: skip
    try:
        outcome = future.result()
    except BrokenProcessPool:
        raise
    except Exception as err:  # the trial's own error: recorded, the search goes on
        record.update(status=FAILED, error=f"{type(err).__name__}: {err}", valid={}, train={})
        return record
    record.update(status=outcome.pop("status", OK), **outcome)
    return record


def _short(point: dict[str, Any]) -> str:
    return " ".join(f"{k.rsplit('.', 1)[-1]}={v}" for k, v in point.items())


def _finish(store: TuningDir, base: dict, source: Any, options: TuneOptions, result: TuneResult,
            say) -> TuneResult:  # fmt: skip
    records = store.records()
    ok = [r for r in records if r["status"] == OK]
    store.write_csv()
    result.complete = source.complete()
    if not ok:
        say("no finished trial yet")
        return result
    hparams.write_config(store.root / "tensorboard", ok, options.metric)
    result.plots = _plots(store, ok, options, say)
    result.winner = choose_winner(ok, options.metric)
    winner = result.winner
    say(f"best on validation: trial {winner['trial_id']} {_short(winner['params'])} "
        f"{options.metric} {winner['valid'][options.metric]:.4f} ({len(ok)} finished trials)")  # fmt: skip
    if not result.complete:
        say("search not complete: re-run the same command to continue; the test figure comes at the end")
    elif options.final_test:
        result.best = final_test(store, base, winner, options.metric, len(ok), say)
    return result


def _plots(store: TuningDir, ok: list[dict[str, Any]], options: TuneOptions, say=print) -> list[Path]:
    out = [plot_curves(ok, store.root / "plots" / "train_valid_rmse_mae.png", options.metric)]
    axes = options.heatmap or _default_heatmap_axes(ok)
    if axes is not None:
        x_axis, y_axis = axes
        name = f"heatmap_{x_axis}__{y_axis}.png".replace("/", "_")
        out.append(plot_heatmap(ok, x_axis, y_axis, options.metric, store.root / "plots" / name))
    try:
        importances = param_importances(ok, options.metric, options.seed)
    except ImportError:
        say("no parameter-importance plot: it needs Optuna (pip install 'tfrs_movies[tune]')")
    except ValueError as why:
        say(f"no parameter-importance plot: {why}")
    else:
        n = sum(options.metric in r["valid"] for r in ok)
        path = store.root / "plots" / "param_importance.png"
        out.append(plot_importance(importances, n, options.metric, path))
    return out


def _default_heatmap_axes(records: list[dict[str, Any]]) -> tuple[str, str] | None:
    """The first two axes that took more than one value."""
    varied = varied_params(records)
    return (varied[0], varied[1]) if len(varied) >= 2 else None


def final_test(store: TuningDir, base: dict[str, Any], winner: dict[str, Any], metric: str,
               n_trials: int, say=print) -> dict[str, Any]:  # fmt: skip
    """Refit the winner with the normal protocol into ``best/`` and read test once; writes best.json."""
    import json

    path = store.root / "best.json"
    if path.exists():
        old = json.loads(path.read_text(encoding="utf-8"))
        if old.get("trial_id") == winner["trial_id"] and old.get("metric") == metric:
            say(f"test figure of trial {winner['trial_id']} already computed: {path}")
            return old
    from tfrs_movies.training.experiment import run

    config = C.merge(base, winner["overrides"])
    run_dir = store.root / "best"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    config["train"]["verbose"] = 0
    experiment = run(config, "test", say=lambda _: None, run_dir=run_dir,
                     extra_figures=lambda model, split: {"parameters": model.parameter_count()})  # fmt: skip
    metrics = experiment.metrics
    test = {k: v for k, v in metrics.items() if isinstance(v, float) and k != "train_seconds"}
    best = {
        "trial_id": winner["trial_id"],
        "metric": metric,
        "direction": direction(metric),
        "params": winner["params"],
        "overrides": winner["overrides"],
        "valid": winner["valid"],
        "train": winner.get("train", {}),
        "test": test,
        "test_users": metrics.get("users"),
        "refit_train_seconds": metrics.get("train_seconds"),
        "trials_finished": n_trials,
        "run_dir": str(run_dir),
        "how": "winner chosen on validation; refitted once by the experiment runner on test (same "
        "protocol as python -m tfrs_movies.train) and evaluated once on test",
    }
    atomic_write_json(path, best)
    shown = f"{test[metric]:.4f}" if metric in test else "n/a"
    say(f"test {metric} of the winner: {shown} (best.json, run dir {run_dir})")
    return best
