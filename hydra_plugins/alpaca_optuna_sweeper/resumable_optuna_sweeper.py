"""Hydra's Optuna sweeper, made resumable: an interrupted search, started again with the same command, runs only the
trials its study still lacks (conf/hparams_search/ keeps the study in SQLite inside the sweep folder).

hydra-optuna-sweeper alone asks for ``n_trials`` new trials on every start. Before handing over to it, this sweeper
- counts the study's finished trials (complete, pruned or failed, as the plugin counts them) and asks only for the
  rest of ``n_trials``;
- puts trials left RUNNING by a killed sweep back in Optuna's queue (WAITING): Optuna hands them out first, with
  the parameters they already had, so each runs again in its own job folder, where the run resumes from its last
  complete round;
- numbers the jobs from the next trial's number, so job folder N holds trial N across restarts;
- seeds the sampler with ``seed + that number``: restarted from its own seed, it would repeat the first trials.
A RUNNING trial is taken to be left over from an interrupted sweep: run one sweep process per study at a time.
"""

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hydra.core.config_store import ConfigStore
from hydra.utils import instantiate

if TYPE_CHECKING:
    import optuna

log = logging.getLogger(__name__)

try:  # the `sweep` extra; without it this plugin stays unregistered instead of warning on every run
    from hydra_plugins.hydra_optuna_sweeper.config import OptunaSweeperConf
    from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper
except ImportError:  # pragma: no cover
    OptunaSweeper = None

if OptunaSweeper is not None:

    @dataclass
    class ResumableOptunaSweeperConf(OptunaSweeperConf):
        _target_: str = "hydra_plugins.alpaca_optuna_sweeper.resumable_optuna_sweeper.ResumableOptunaSweeper"

    ConfigStore.instance().store(
        group="hydra/sweeper", name="resumable_optuna", node=ResumableOptunaSweeperConf, provider="alpaca"
    )

    class ResumableOptunaSweeper(OptunaSweeper):
        def sweep(self, arguments: list[str]) -> Any:
            impl = self.sweeper  # the plugin's OptunaSweeperImpl: it reads n_trials and job_idx when sweeping
            if impl.storage is None:
                log.warning("hydra.sweeper.storage is null: the study lives in memory and cannot be resumed.")
                return super().sweep(arguments)
            Path(str(impl.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)  # holds the SQLite file
            study = open_study(impl.study_name, impl.storage, impl._get_directions())
            requeued = requeue_interrupted_trials(study)
            finished = sum(trial.state.is_finished() for trial in study.get_trials(deepcopy=False))
            impl.n_trials = max(impl.n_trials - finished, 0)
            impl.job_idx = next_trial_number(study)
            seed = impl.config.hydra.sweeper.sampler.get("seed")
            if seed is not None and impl.job_idx > 0:
                # a sampler restarted from its seed would draw the first trials' parameters again
                impl.sampler = instantiate(impl.config.hydra.sweeper.sampler, seed=seed + impl.job_idx)
            log.info(
                f"Study {study.study_name}: {finished} trials finished, {len(requeued)} interrupted ones re-queued "
                f"{requeued}, {impl.n_trials} to run from trial {impl.job_idx}."
            )
            return super().sweep(arguments)


def open_study(study_name: "str | None", storage: Any, directions: list[str]) -> "optuna.Study":
    import optuna

    return optuna.create_study(study_name=study_name, storage=storage, directions=directions, load_if_exists=True)


def requeue_interrupted_trials(study: "optuna.Study") -> list[int]:
    """RUNNING -> WAITING: the next ``study.ask()`` returns the trial again, with its parameters."""
    from optuna.trial import TrialState

    running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for trial in running:
        study._storage.set_trial_state(trial._trial_id, TrialState.WAITING)
    return [trial.number for trial in running]


def next_trial_number(study: "optuna.Study") -> int:
    """The number of the trial that ``study.ask()`` returns next: the first queued one, else a new one."""
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    return min((t.number for t in trials if t.state == TrialState.WAITING), default=len(trials))
