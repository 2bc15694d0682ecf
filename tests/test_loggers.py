"""Loggers across runs, all offline: W&B groups the runs of a multirun and a resumed run logs into its W&B run
again; TensorBoard and MLflow write the run's metrics to their local files."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

import pytest

from alpaca_lightning.artifacts import read_json
from alpaca_lightning.pipeline import run
from tests.conftest import compose_config, tiny_overrides
from tests.test_cli import cli, without_output_dir

WANDB_BLOCK = 32768  # a .wandb file is a LevelDB-style log: 7-byte file header, then records in 32 KiB blocks


def wandb_records(run_folder: Path, wait_s: float = 15.0) -> list:
    """Every record (run, history, ..., exit) of a finished offline W&B run, read from its .wandb file. W&B's service
    process writes that file: on a busy machine it may still be flushing it just after wandb.finish() returns, so
    this waits (a little) for the exit record that ends it."""
    deadline = time.monotonic() + wait_s
    while True:
        records = list(parse_wandb_file(next(run_folder.glob("*.wandb")).read_bytes()))
        if any(r.WhichOneof("record_type") == "exit" for r in records) or time.monotonic() > deadline:
            return records
        time.sleep(0.2)


def parse_wandb_file(data: bytes):
    from wandb.proto import wandb_internal_pb2

    pos, chunk = 7, b""
    while pos + 7 <= len(data):
        if WANDB_BLOCK - pos % WANDB_BLOCK < 7:  # a block's tail too short for a header is padding
            pos += WANDB_BLOCK - pos % WANDB_BLOCK
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        chunk += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # a full record, or the last piece of one
            record = wandb_internal_pb2.Record()
            record.ParseFromString(chunk)
            chunk = b""
            yield record


def wandb_run_record(run_folder: Path):
    """The RunRecord (id, group, tags) of an offline W&B run."""
    for record in wandb_records(run_folder):
        if record.WhichOneof("record_type") == "run":
            return record.run
    raise AssertionError(f"no run record in {run_folder}")


def wandb_history(run_folder: Path) -> list[dict[str, object]]:
    """The logged rows of an offline W&B run, e.g. [{"_step": 3, "val/acc": 0.625, ...}]."""
    return [{item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in record.history.item}
            for record in wandb_records(run_folder) if record.WhichOneof("record_type") == "history"]


@pytest.mark.slow
def test_the_runs_of_a_multirun_share_a_wandb_group(synthetic_task, tmp_path) -> None:
    sweep = tmp_path / "sweep"
    overrides = without_output_dir(tiny_overrides(synthetic_task, tmp_path)) + [
        "logger=wandb", "selftrain.max_rounds=1", "tags=[search_test]", f"hydra.sweep.dir={sweep}", "seed=0,1",
    ]
    done = cli(["--multirun", *overrides], tmp_path)  # conftest: WANDB_MODE=offline, W&B folders under tmp_path
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    runs = [wandb_run_record(folder) for job in ("0", "1") for folder in (sweep / job / "wandb").glob("offline-run-*")]
    assert len(runs) == 2  # one W&B run per job, although both jobs ran in the sweep's process
    assert [r.run_group for r in runs] == [str(sweep)] * 2
    assert [list(r.tags) for r in runs] == [["search_test"]] * 2
    assert runs[0].run_id != runs[1].run_id
    assert [r.run_id for r in runs] == [(sweep / job / "wandb_id.txt").read_text().strip() for job in ("0", "1")]


@pytest.mark.slow
def test_a_resumed_run_logs_into_its_wandb_run_again(synthetic_task, tmp_path) -> None:
    overrides = tiny_overrides(synthetic_task, tmp_path) + ["logger=wandb", "selftrain.max_rounds=1"]
    run(compose_config(overrides))
    # resumes: rounds 0-1 from disk, then round 2 (more rounds is a config change: allowed explicitly)
    run(compose_config(overrides[:-1] + ["selftrain.max_rounds=2", "allow_config_change=true"]))
    run_id = (tmp_path / "wandb_id.txt").read_text().strip()
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    assert len(runs) == 2 and [wandb_run_record(folder).run_id for folder in runs] == [run_id, run_id]
    assert wandb_run_record(runs[0]).run_group == str(tmp_path)  # a single run is its own group


def round_values(run_dir: Path, key: str = "val/acc") -> list[float]:
    return [record[key] for record in read_json(run_dir / "rounds.json")]


def tensorboard_scalars(folder: Path) -> dict[str, list[float]]:
    """Scalar values per tag in the event files under ``folder`` (TFRecord framing: length, crc, data, crc)."""
    from tensorboardX.proto.event_pb2 import Event

    scalars: dict[str, list[float]] = {}
    for path in folder.rglob("events.out.tfevents.*"):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (length,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + length])
            pos += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append(value.simple_value)
    return scalars


def test_tensorboard_logger_writes_the_metrics_offline(synthetic_task, tmp_path) -> None:
    pytest.importorskip("tensorboardX")
    overrides = tiny_overrides(synthetic_task, tmp_path) + ["logger=tensorboard", "selftrain.max_rounds=1"]
    run(compose_config(overrides))
    rounds = tensorboard_scalars(tmp_path / "tensorboard" / "rounds")
    assert rounds["round/val/acc"] == pytest.approx(round_values(tmp_path), abs=1e-6)
    assert "train/loss" in tensorboard_scalars(tmp_path / "tensorboard" / "round_1")


@pytest.mark.slow
def test_mlflow_logger_writes_the_metrics_to_a_local_store(synthetic_task, tmp_path) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    store = f"sqlite:///{tmp_path}/mlflow.db"
    overrides = tiny_overrides(synthetic_task, tmp_path) + [
        "logger=mlflow", f"logger.mlflow.tracking_uri={store}", "selftrain.max_rounds=1",
    ]
    run(compose_config(overrides))
    client = MlflowClient(store)
    experiment = client.get_experiment_by_name("alpaca_lightning")
    runs = {r.info.run_name: r for r in client.search_runs([experiment.experiment_id])}
    assert {"files-seed0/round_0", "files-seed0/round_1", "files-seed0/rounds"} <= set(runs)
    rounds = runs["files-seed0/rounds"]
    assert rounds.data.tags["group"] == str(tmp_path)
    history = client.get_metric_history(rounds.info.run_id, "round/val/acc")
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(round_values(tmp_path))
