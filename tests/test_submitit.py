"""The submitit launchers: a tiny job through submitit's local executor, and the SLURM launcher's job script
rendered from the config (no cluster needed)."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from tests.conftest import CONF_DIR, outcome, tiny_overrides
from tests.test_cli import cli, without_output_dir

submitit = pytest.importorskip("submitit")

# Hydra's submitit launcher passes these to submitit's generic executor, the rest as slurm_<name>
GENERIC = {"timeout_min", "mem_gb", "nodes", "cpus_per_task", "gpus_per_node", "tasks_per_node", "name",
           "stderr_to_stdout"}


@pytest.mark.slow
def test_a_job_through_the_submitit_local_launcher_gives_the_in_process_results(synthetic_task, tiny_run_once,
                                                                                 tmp_path) -> None:
    """The job runs in a process that submitit starts, from a pickled Hydra config: its results and round table
    are the in-process run's of the same config, to the last digit."""
    sweep = tmp_path / "sweep"
    overrides = without_output_dir(tiny_overrides(synthetic_task, tmp_path)) + [
        "launcher=submitit_local", f"hydra.sweep.dir={sweep}", "seed=0", "--multirun",
    ]
    done = cli(overrides, tmp_path)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert outcome(sweep / "0") == outcome(tiny_run_once.out)
    assert list((sweep / ".submitit").glob("*/*_result.pkl"))  # submitit ran it, not the basic launcher


def test_the_slurm_launcher_renders_one_task_per_gpu(tmp_path, monkeypatch) -> None:
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("train", return_hydra_config=True, overrides=[
            "launcher=slurm", "hardware=ddp", "hardware.devices=4", "hardware.num_nodes=2",
            "hydra.launcher.partition=gpu", "hydra.launcher.account=my_project",
        ])
    # what Hydra's submitit launcher does with its config: max_num_timeout goes to the executor, the rest to
    # update_parameters, generic names as they are and SLURM's own with a slurm_ prefix
    launcher = {k: v for k, v in cfg.hydra.launcher.items() if k not in ("_target_", "submitit_folder")}
    init = {"slurm_max_num_timeout": launcher.pop("max_num_timeout")}
    params = {(k if k in GENERIC else f"slurm_{k}"): v for k, v in launcher.items() if v is not None}
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", staticmethod(lambda: 1))  # no srun here: no cluster
    executor = submitit.AutoExecutor(folder=tmp_path, cluster="slurm", **init)
    executor.update_parameters(**params)
    script = executor._executor._make_submission_file_text("python -m alpaca_lightning.train", "job")
    for flag in ("--nodes=2", "--gpus-per-node=4", "--ntasks-per-node=4", "--partition=gpu",
                 "--account=my_project", "--time=240", "--cpus-per-task=8"):
        assert f"#SBATCH {flag}" in script, flag
