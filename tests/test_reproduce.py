"""alpaca-reproduce: a finished run re-runs from its saved config to identical metrics; an edited config is
refused loudly."""

from __future__ import annotations

import pytest

from alpaca_lightning import reproduce
from alpaca_lightning.errors import AlpacaError
from tests import conftest


@pytest.fixture(scope="module")
def finished_run(tiny_run_once):
    return tiny_run_once.out


def test_a_finished_run_reproduces_to_identical_metrics(finished_run, tmp_path) -> None:
    outcome = reproduce.reproduce(finished_run, tmp_path / "again")
    assert outcome["differences"] == []
    assert conftest.outcome(tmp_path / "again") == conftest.outcome(finished_run)  # what "identical" means
    assert (tmp_path / "again" / "results.json").is_file()
    assert (tmp_path / "again" / "logs").is_dir() and not (finished_run / "reproduced").exists()
    assert reproduce.compare({"best": {"test/acc": 0.5}}, {"best": {"test/acc": 0.51}}, 0.0) == [
        "best/test/acc: recorded 0.5, now 0.51"]
    with pytest.raises(AlpacaError, match="not empty"):
        reproduce.reproduce(finished_run, tmp_path / "again")


def test_an_edited_config_is_refused(finished_run, tmp_path, capsys) -> None:
    tampered = tmp_path / "tampered"
    tampered.mkdir()
    for name in ("run_info.json", "results.json"):
        (tampered / name).write_text((finished_run / name).read_text())
    text = (finished_run / "config_resolved.yaml").read_text()
    assert "student_epochs: 2" in text
    (tampered / "config_resolved.yaml").write_text(text.replace("student_epochs: 2", "student_epochs: 3"))
    with pytest.raises(AlpacaError, match="changed after the run"):
        reproduce.reproduce(tampered, tmp_path / "out")
    assert reproduce.main([str(tampered)]) == 2
    assert "changed after the run" in capsys.readouterr().err
    assert reproduce.main([str(tmp_path / "nowhere")]) == 2  # not a finished run: a clear error too


def test_changed_data_is_named_as_such(finished_run, tmp_path) -> None:
    import json

    from alpaca_lightning.data.splits import TextSplit
    from alpaca_lightning.run_info import split_fingerprint

    recorded = json.loads((finished_run / "splits.json").read_text())
    assert set(recorded) == {"labelled", "validation", "pool", "test"} and recorded["labelled"]["size"] == 32
    (tmp_path / "new").mkdir()
    changed = {**recorded, "pool": {**recorded["pool"], "sha256": "0" * 64}}  # e.g. one edited row of train.csv
    (tmp_path / "new" / "splits.json").write_text(json.dumps(changed))
    [problem] = reproduce.split_differences(finished_run, tmp_path / "new")
    assert problem.startswith("split 'pool' differs") and "data files" in problem
    # the fingerprint sees a changed label, and the order of the examples
    import numpy as np

    base = split_fingerprint(TextSplit(["a", "b"], np.array([0, 1])))
    assert base != split_fingerprint(TextSplit(["a", "b"], np.array([0, 0])))
    assert base != split_fingerprint(TextSplit(["b", "a"], np.array([1, 0])))
    assert base == split_fingerprint(TextSplit(["a", "b"], np.array([0, 1])))
