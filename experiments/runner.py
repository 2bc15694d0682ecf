"""Run many alpaca-train configurations, several at a time, for the benchmark and ablation scripts.

    with RunPool(jobs=8) as pool:                      # 8 worker processes (jobs=1: in this process)
        outcomes = pool.run([Job(overrides, out_dir), ...])   # one Outcome per job, in the same order

A job is one alpaca-train run into its own folder. A folder that already holds results.json is reused, not rerun,
so repeating an interrupted command only runs what is missing. A failing run is recorded (its traceback goes to
<out_dir>/error.txt) and the others go on; ``pool.failures`` lists them at the end.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import shutil
import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alpaca_lightning.assets import REPO_ROOT, register_resolvers

if TYPE_CHECKING:
    from typing_extensions import Self

# (overrides, out_dir) -> results; must be a module-level function so that worker processes can unpickle it.
JobFn = Callable[[list[str], Path], dict[str, Any]]


def run_once(overrides: list[str], out_dir: Path) -> dict[str, Any]:
    """One alpaca-train run in this process: compose conf/train.yaml with the overrides, run, drop the models."""
    # Imported here so that pool workers (and the pool's tests) load Hydra and torch only when they train.
    from hydra import compose, initialize_config_dir

    from alpaca_lightning.pipeline import run

    with initialize_config_dir(config_dir=str(REPO_ROOT / "conf"), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[*overrides, f"paths.output_dir={out_dir}"])
    results = run(cfg)
    for model_dir in out_dir.glob("rounds/round_*/model"):  # ~90 MB each; the scripts only need the metrics
        shutil.rmtree(model_dir)
    return results


@dataclass(frozen=True)
class Job:
    overrides: list[str]
    out_dir: Path

    @property
    def name(self) -> str:
        return self.out_dir.name


@dataclass
class Outcome:
    job: Job
    results: dict[str, Any] | None = None
    error: str | None = None  # "ExceptionType: message" when the run failed
    seconds: float = 0.0
    reused: bool = False  # results.json was already there from an earlier invocation

    @property
    def ok(self) -> bool:
        return self.error is None


def finished_results(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / "results.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _execute(job_fn: JobFn, overrides: list[str], out_dir: Path) -> tuple[dict[str, Any] | None, str | None, float]:
    """Runs in the worker: never raises, so one bad configuration cannot take the pool down."""
    start = time.time()
    out_dir.mkdir(parents=True, exist_ok=True)
    error_file = out_dir / "error.txt"
    error_file.unlink(missing_ok=True)  # from an earlier failed attempt
    try:
        return job_fn(overrides, out_dir), None, time.time() - start
    except Exception as exc:  # noqa: BLE001 - any failure of a run is reported, not raised
        error_file.write_text(traceback.format_exc())
        return None, f"{type(exc).__name__}: {exc}", time.time() - start


def _init_worker(threads: int) -> None:
    # Spawned workers start blank: they need the OmegaConf resolvers of conf/ and a fair share of the CPU cores.
    import torch

    register_resolvers()
    torch.set_num_threads(threads)


@dataclass
class RunPool:
    """Runs jobs on ``jobs`` worker processes (spawned: CUDA does not survive fork); jobs=1 runs in this process.

    Use it as a context manager so that the workers are started once and shared by successive ``run`` calls.
    """

    jobs: int = 1
    job_fn: JobFn = run_once
    label: str = "benchmark"  # prefix of the progress lines
    reuse_only: bool = False  # rebuild a report from finished runs: record missing ones as not run, start nothing
    failures: list[Outcome] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    _executor: ProcessPoolExecutor | None = field(default=None, repr=False)

    def __enter__(self) -> Self:
        if self.jobs > 1:
            threads = max(1, (os.cpu_count() or 1) // self.jobs)
            self._executor = ProcessPoolExecutor(
                max_workers=self.jobs,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(threads,),
            )
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def run(self, jobs: list[Job], title: str = "runs") -> list[Outcome]:
        """Runs the jobs (finished folders are reused) and returns one Outcome per job, in the order given."""
        outcomes = [Outcome(job) for job in jobs]
        todo = []
        for outcome in outcomes:
            outcome.results = finished_results(outcome.job.out_dir)
            outcome.reused = outcome.results is not None
            if outcome.reused:
                self.reused.append(outcome.job.name)
            elif self.reuse_only:
                outcome.error = "not run (--reuse-only and no finished run folder)"
                self.failures.append(outcome)
            else:
                todo.append(outcome)
        print(
            f"[{self.label}] {title}: {len(todo)} to do, {len(jobs) - len(todo)} reused, {max(1, self.jobs)} at a time",
            flush=True,
        )
        for done, outcome in enumerate(self._finish(todo), start=1):
            self._progress(done, len(todo), outcome)
        return outcomes

    def _finish(self, todo: list[Outcome]) -> Iterator[Outcome]:
        """Yields the outcomes as their runs end, filled in."""
        if self._executor is None:
            if self.jobs > 1:
                raise RuntimeError("RunPool with jobs > 1 must be used as a context manager (with RunPool(...))")
            for outcome in todo:
                outcome.results, outcome.error, outcome.seconds = _execute(self.job_fn, *self._args(outcome))
                yield outcome
            return
        futures: dict[Future, Outcome] = {self._executor.submit(_execute, self.job_fn, *self._args(o)): o for o in todo}
        for future in as_completed(futures):
            outcome = futures[future]
            try:
                outcome.results, outcome.error, outcome.seconds = future.result()
            except Exception as exc:  # noqa: BLE001 - a worker that died (killed, crashed): its run failed
                outcome.error = f"{type(exc).__name__}: {exc}"
            yield outcome

    @staticmethod
    def _args(outcome: Outcome) -> tuple[list[str], Path]:
        return outcome.job.overrides, outcome.job.out_dir

    def _progress(self, done: int, total: int, outcome: Outcome) -> None:
        status = "done" if outcome.ok else "FAILED"
        line = f"[{self.label}] {done}/{total} {status} {outcome.job.name} ({outcome.seconds:.0f} s)"
        if not outcome.ok:
            self.failures.append(outcome)
            line += f": {outcome.error.splitlines()[0] if outcome.error else ''} (see {outcome.job.out_dir}/error.txt)"
        print(line, flush=True)


def failure_report(pool: RunPool) -> list[dict[str, str]]:
    return [{"run": o.job.name, "error": o.error or ""} for o in pool.failures]


REBUILT = "the machines recorded in each run's run_info.json (report rebuilt from finished runs, --reuse-only)"


def device_name() -> str:
    """What the runs ran on, for the report header."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPU cores"


def common_overrides(hardware: str | None, extra: list[str] | tuple[str, ...]) -> list[str]:
    """Overrides shared by every run of a script: --hardware, then the --override flags (so those win)."""
    return ([f"hardware={hardware}"] if hardware else []) + list(extra)


def add_common_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that benchmark.py and ablations.py share."""
    parser.add_argument("--jobs", type=int, default=1, help="runs at a time, each in its own process (default 1)")
    parser.add_argument("--hardware", help="adds the override hardware=NAME to every run, e.g. gpu")
    parser.add_argument("--override", action="append", default=[], help="an alpaca-train override for every run")
    parser.add_argument("--datasets", nargs="+", help="replace the default datasets")
    parser.add_argument("--seeds", nargs="+", type=int, help="replace the default seeds")
    parser.add_argument(
        "--reuse-only", action="store_true",
        help="start no run: rebuild the report from the finished run folders, listing missing runs as not run",
    )
