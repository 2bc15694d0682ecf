"""A Hydra sweeper that runs a given list of jobs, each with its own overrides and folder name.

Hydra's basic sweeper runs the Cartesian product of swept values. A benchmark is not a product: its phases depend on
each other (the self-training runs use the supervised recipe chosen on validation) and its cells differ in several
keys at once. This sweeper takes the jobs from a YAML file and hands them to the configured launcher (local, joblib,
submitit, SLURM), so every run of the benchmark and the ablations goes through Hydra's own launchers:

    alpaca-train --multirun hydra/sweeper=job_list hydra.sweeper.jobs_file=jobs.yaml hydra.sweep.dir=runs \
        launcher=joblib hydra.launcher.n_jobs=2

``jobs.yaml``: ``jobs: [{name: sst2_K8_s0, overrides: [task=sst2, seed=0, ...]}, ...]``. Job ``name`` runs in
``<hydra.sweep.dir>/<name>``. A job whose folder already holds ``results.json`` is finished and is not launched
again, so repeating an interrupted sweep runs only the missing jobs. A failed job does not stop the others: its
error goes to ``<job folder>/error.txt`` (unless the job wrote it itself) and the sweep ends with an error listing
the failed jobs.
"""


import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from hydra.core.config_store import ConfigStore
from hydra.core.plugins import Plugins
from hydra.core.utils import JobReturn, JobStatus
from hydra.errors import HydraException
from hydra.plugins.sweeper import Sweeper
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf

log = logging.getLogger(__name__)
FINISHED_MARKER = "results.json"  # written last, atomically, by a finished run


@dataclass
class JobListSweeperConf:
    _target_: str = "hydra_plugins.alpaca_job_list.job_list_sweeper.JobListSweeper"
    jobs_file: str = "???"
    max_batch_size: Optional[int] = None  # jobs handed to the launcher at once (None: all)


ConfigStore.instance().store(group="hydra/sweeper", name="job_list", node=JobListSweeperConf, provider="alpaca")


def read_jobs(jobs_file: "str | Path") -> list[dict[str, Any]]:
    path = Path(jobs_file)
    if not path.is_file():
        raise HydraException(f"hydra.sweeper.jobs_file: no such file: {path}")
    jobs = OmegaConf.to_container(OmegaConf.load(path)).get("jobs")
    if not isinstance(jobs, list) or not all(isinstance(j, dict) and {"name", "overrides"} <= set(j) for j in jobs):
        raise HydraException(f"{path}: expected 'jobs: [{{name: ..., overrides: [...]}}, ...]'")
    names = [str(j["name"]) for j in jobs]
    if len(set(names)) != len(names):
        raise HydraException(f"{path}: job names must be unique (each names its own folder)")
    return jobs


class JobListSweeper(Sweeper):
    def __init__(self, jobs_file: str, max_batch_size: Optional[int] = None) -> None:
        self.jobs_file = jobs_file
        self.max_batch_size = max_batch_size
        self.config: Optional[DictConfig] = None
        self.launcher = None
        self.hydra_context: Optional[HydraContext] = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.hydra_context = hydra_context
        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> list[Sequence[JobReturn]]:
        assert self.config is not None and self.launcher is not None
        sweep_dir = Path(self.config.hydra.sweep.dir)
        sweep_dir.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(self.config, sweep_dir / "multirun.yaml")
        jobs = read_jobs(self.jobs_file)
        todo = [j for j in jobs if not (sweep_dir / str(j["name"]) / FINISHED_MARKER).is_file()]
        log.info(f"job list {self.jobs_file}: {len(todo)} to run, {len(jobs) - len(todo)} finished earlier")
        # command-line arguments first, then the job's own overrides (they win), then its folder
        batch = [[*arguments, *map(str, j["overrides"]), f"hydra.sweep.subdir={j['name']}"] for j in todo]
        size = self.max_batch_size or max(1, len(batch))
        returns, failed = [], []
        for start in range(0, len(batch), size):
            chunk = batch[start:start + size]
            self.validate_batch_is_legal(chunk)
            results = self.launcher.launch(chunk, initial_job_idx=start)
            for job, result in zip(todo[start:start + size], results):
                if result.status != JobStatus.COMPLETED:
                    failed.append(str(job["name"]))
                    record_failure(sweep_dir / str(job["name"]), result)
            returns.append(results)
        if failed:
            raise HydraException(f"{len(failed)} of {len(todo)} job(s) failed (see error.txt in each): {failed}")
        return returns


def record_failure(job_dir: Path, result: JobReturn) -> None:
    """error.txt for a failed job, unless the job wrote one itself (with its traceback)."""
    error_file = job_dir / "error.txt"
    if not error_file.is_file():
        job_dir.mkdir(parents=True, exist_ok=True)
        error = result._return_value
        error_file.write_text(f"{type(error).__name__}: {error}\n")
