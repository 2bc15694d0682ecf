"""Graceful pre-emption: SIGTERM / SIGUSR1 to a running ``alpaca-train`` saves a mid-epoch checkpoint and exits 75;
the same command resumes that fit after the very step it stopped at, with the results of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from alpaca_lightning.artifacts import atomic_write_json
from alpaca_lightning.preemption import EXIT_PREEMPTED, PreemptionCheckpoint, resume_dir
from tests.kill_harness import REPO, Zygote
from tests.test_kill import child_env, normalised, one_round_overrides, read_trace


def preemption_overrides(task: dict[str, Path], out: Path) -> list[str]:
    """Round 0 has 2 batches per epoch (16 labelled, batch 8): step 3 is the middle of epoch 1."""
    return one_round_overrides(task, out)


def cli(argv: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HYDRA_FULL_ERROR": "1", **env}
    return subprocess.run([sys.executable, "-m", "alpaca_lightning.train", *argv], cwd=REPO, env=full_env,
                          capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def uninterrupted(synthetic_task, tmp_path_factory):
    out = tmp_path_factory.mktemp("preemption_reference") / "run"
    done = cli(preemption_overrides(synthetic_task, out), {}, out.parent)
    assert done.returncode == 0, done.stderr[-3000:]
    return normalised(out)


@pytest.mark.slow
def test_sigterm_mid_epoch_checkpoints_exits_75_and_resumes_exactly(synthetic_task, uninterrupted, tmp_path):
    out = tmp_path / "run"
    argv = preemption_overrides(synthetic_task, out)
    round0 = out / "rounds" / "round_0"
    # The process gets SIGTERM (from itself, at a named moment: after training step 3, mid-epoch 1).
    stop_at = f"fit {round0} round_0 step 3"
    first = cli(argv, {**child_env(tmp_path / "trace_0", stop_at), "ALPACA_KILL_SIGNAL": "TERM"}, tmp_path)
    assert first.returncode == EXIT_PREEMPTED, first.stderr[-3000:]
    checkpoint = resume_dir(round0) / "round_0.ckpt"
    assert f"pre-empted by SIGTERM in round_0 at epoch 1, step 3; saved {checkpoint}" in first.stderr
    assert f"Resume with the same command and output folder ({out})" in first.stderr
    assert checkpoint.is_file() and checkpoint.with_suffix(".json").is_file()

    second = cli(argv, child_env(tmp_path / "trace_1"), tmp_path)
    assert second.returncode == 0, second.stderr[-3000:]
    steps = [label for label in read_trace(tmp_path / "trace_1") if label.startswith(f"fit {round0} round_0 step")]
    assert steps[0] == f"fit {round0} round_0 step 4"  # mid-epoch: the round did not start over
    assert "resuming at epoch 1 after 1 batches" in second.stdout + second.stderr
    assert normalised(out) == uninterrupted
    assert not resume_dir(round0).exists()  # deleted once the round is complete


@pytest.mark.slow
def test_external_sigusr1_during_a_student_round(synthetic_task, uninterrupted, tmp_path):
    """SLURM's warning signal, sent from outside while round 1 trains; the sweep-style re-run finishes it."""
    out = tmp_path / "run"
    argv = preemption_overrides(synthetic_task, out)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
    zygote = Zygote(env)
    try:
        label = f"fit {out / 'rounds' / 'round_1'} round_1 step 1"
        status = zygote.run(argv, child_env(tmp_path / "trace_0"), tmp_path / "log_0",
                            signal_at=(label, signal.SIGUSR1))
        log = (tmp_path / "log_0").read_text()
        assert status == EXIT_PREEMPTED, log[-3000:]
        assert "pre-empted by SIGUSR1" in log
        status = zygote.run(argv, child_env(tmp_path / "trace_1"), tmp_path / "log_1")
        assert status == 0, (tmp_path / "log_1").read_text()[-3000:]
    finally:
        zygote.close()
    assert normalised(out) == uninterrupted


def test_a_checkpoint_of_another_config_or_unit_is_never_resumed(tmp_path):
    unit = tmp_path / "rounds" / "round_1"
    mine = PreemptionCheckpoint("round_1", unit, run_key="abc")
    mine.path.parent.mkdir(parents=True)
    mine.path.write_bytes(b"not read")
    assert mine.resume_path() is None and not mine.path.exists()  # no identity card: cut short, discarded
    for other in (PreemptionCheckpoint("round_1", unit, run_key="other config"),
                  PreemptionCheckpoint("round_1", tmp_path / "rounds" / "round_2", run_key="abc"),
                  PreemptionCheckpoint("teacher_cloze", unit, run_key="abc")):
        mine.path.write_bytes(b"not read")
        atomic_write_json(mine.card, other.identity)
        assert mine.resume_path() is None and not mine.path.exists()
    mine.path.write_bytes(b"resumable")
    atomic_write_json(mine.card, mine.identity)
    assert mine.resume_path() == str(mine.path)
