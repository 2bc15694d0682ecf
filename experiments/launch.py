"""Launch the runs of the benchmark and the ablations as Hydra multiruns, through Hydra's own launchers.

    launch = Launch(launcher="joblib", jobs=2, label="benchmark")
    outcomes = launch.run([Job(overrides, runs / "sst2_K8_sup0_s0"), ...])   # one Outcome per job, in order

The jobs go to ``alpaca-train --multirun hydra/sweeper=job_list`` (hydra_plugins/alpaca_job_list): one sweep per
call, its job list saved beside the run folders, run by ``launcher=local|joblib|submitit_local|slurm`` (conf/launcher).
So the benchmark can go to a cluster like any sweep, and its runs are ordinary alpaca-train run folders that
``alpaca-report`` reads. A folder that already holds results.json is reused, not rerun, so repeating an interrupted
command only runs what is missing. A failed run is recorded (its error goes to <run folder>/error.txt) and the others
go on; ``launch.failures`` lists them at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alpaca_lightning.artifacts import atomic_write_text, read_json
from alpaca_lightning.assets import REPO_ROOT

TRAIN_APP = "alpaca_lightning.train"
POLL_SECONDS = 5.0


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
    error: str | None = None  # the last line of error.txt when the run failed
    seconds: float = 0.0
    reused: bool = False  # results.json was already there from an earlier invocation

    @property
    def ok(self) -> bool:
        return self.error is None


def finished_results(out_dir: Path) -> dict[str, Any] | None:
    path = out_dir / "results.json"
    return read_json(path) if path.is_file() else None


def job_error(out_dir: Path) -> str | None:
    path = out_dir / "error.txt"
    if not path.is_file():
        return None
    lines = path.read_text().strip().splitlines()
    return lines[-1] if lines else "failed (empty error.txt)"


def job_list_yaml(jobs: list[Job]) -> str:
    """The sweeper's job list; JSON strings are valid YAML and keep overrides such as stages=[] intact."""
    entries = [f"  - name: {json.dumps(j.name)}\n    overrides: {json.dumps(j.overrides)}" for j in jobs]
    return "jobs:\n" + "\n".join(entries) + "\n"


@dataclass
class Launch:
    """Runs jobs as one Hydra multirun per ``run`` call: ``launcher`` is a conf/launcher/ config, ``jobs`` the runs
    at a time of the joblib launcher (``jobs > 1`` with the default launcher means joblib)."""

    launcher: str = "local"
    jobs: int = 1
    label: str = "benchmark"  # prefix of the progress lines and of the job-list file
    app: str = TRAIN_APP  # the Hydra app each job runs (experiments.peers for the peers)
    reuse_only: bool = False  # rebuild a report from finished runs: record missing ones as not run, start nothing
    extra: list[str] = field(default_factory=list)  # Hydra overrides of the sweep itself (hydra.launcher.partition=...)
    keep_models: bool = False  # the scripts read metrics only: drop each new run's round models (~90 MB each)
    failures: list[Outcome] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)

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
        print(f"[{self.label}] {title}: {len(todo)} to do, {len(jobs) - len(todo)} reused, launcher "
              f"{self.launcher_name()} ({max(1, self.jobs)} at a time)", flush=True)
        if todo:
            self._sweep([o.job for o in todo])
        for outcome in todo:
            outcome.results = finished_results(outcome.job.out_dir)
            outcome.seconds = float((outcome.results or {}).get("wall_time_s", 0.0))
            if outcome.results is None:
                outcome.error = job_error(outcome.job.out_dir) or "no results.json (see the sweep log)"
                self.failures.append(outcome)
            elif not self.keep_models:
                for model_dir in outcome.job.out_dir.glob("rounds/round_*/model"):
                    shutil.rmtree(model_dir)
        return outcomes

    def launcher_name(self) -> str:
        return "joblib" if self.jobs > 1 and self.launcher == "local" else self.launcher

    def command(self, jobs_file: Path, sweep_dir: Path) -> list[str]:
        """The multirun command line (printed, so that it can be run by hand)."""
        launcher = self.launcher_name()
        parallel = [f"hydra.launcher.n_jobs={self.jobs}"] if launcher == "joblib" else []
        return [
            sys.executable, "-m", self.app, "--multirun", "hydra/sweeper=job_list",
            f"hydra.sweeper.jobs_file={jobs_file}", f"hydra.sweep.dir={sweep_dir}", f"launcher={launcher}",
            *parallel, *self.extra,
        ]

    def _sweep(self, jobs: list[Job]) -> None:
        sweep_dir = jobs[0].out_dir.parent
        if any(j.out_dir.parent != sweep_dir for j in jobs):
            raise ValueError("the jobs of one Launch.run call must share their parent folder (the sweep folder)")
        for job in jobs:  # a failure of an earlier attempt is not this attempt's
            (job.out_dir / "error.txt").unlink(missing_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        jobs_file = sweep_dir / f".jobs_{self.label}_{stamp}.yaml"
        atomic_write_text(jobs_file, job_list_yaml(jobs))
        log_file = sweep_dir / f".sweep_{self.label}_{stamp}.log"
        command = self.command(jobs_file, sweep_dir)
        print(f"[{self.label}] {' '.join(command[1:])}\n[{self.label}] sweep log: {log_file}", flush=True)
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO_ROOT), os.environ.get("PYTHONPATH", "")])}
        with open(log_file, "w") as log:
            process = subprocess.Popen(command, cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
            self._follow(process, jobs)
        # a non-zero status with every run finished cannot happen; with runs missing they are listed as failures
        if process.returncode != 0 and all(finished_results(j.out_dir) for j in jobs):
            raise RuntimeError(f"the sweep failed after its runs finished; see {log_file}")

    def _follow(self, process: subprocess.Popen, jobs: list[Job]) -> None:
        """One progress line per run as it finishes or fails, until the sweep process ends."""
        pending = list(jobs)
        done = 0
        while pending:
            ended = process.poll() is not None
            for job in list(pending):
                results, error = finished_results(job.out_dir), job_error(job.out_dir)
                if results is not None or error is not None or ended:
                    pending.remove(job)
                    done += 1
                    status = "done" if results else f"FAILED: {error or 'no results.json'}"
                    print(f"[{self.label}] {done}/{len(jobs)} {status} {job.name}", flush=True)
            if pending:
                time.sleep(POLL_SECONDS)
        process.wait()


def failure_report(launch: Launch) -> list[dict[str, str]]:
    return [{"run": o.job.name, "error": o.error or ""} for o in launch.failures]


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
    parser.add_argument("--jobs", type=int, default=1,
                        help="runs at a time (default 1; more than 1 uses Hydra's joblib launcher)")
    parser.add_argument("--launcher", default="local", choices=["local", "joblib", "submitit_local", "slurm"],
                        help="how the runs are launched: a conf/launcher/ config (slurm: a SLURM cluster)")
    parser.add_argument("--sweep-override", action="append", default=[],
                        help="a Hydra override of the sweep, e.g. hydra.launcher.partition=gpu")
    parser.add_argument("--hardware", help="adds the override hardware=NAME to every run, e.g. gpu")
    parser.add_argument("--override", action="append", default=[], help="an alpaca-train override for every run")
    parser.add_argument("--datasets", nargs="+", help="replace the default datasets")
    parser.add_argument("--seeds", nargs="+", type=int, help="replace the default seeds")
    parser.add_argument(
        "--reuse-only", action="store_true",
        help="start no run: rebuild the report from the finished run folders, listing missing runs as not run",
    )


def launch_from_args(args: argparse.Namespace, label: str, app: str = TRAIN_APP) -> Launch:
    return Launch(launcher=args.launcher, jobs=args.jobs, label=label, app=app, reuse_only=args.reuse_only,
                  extra=list(args.sweep_override))
