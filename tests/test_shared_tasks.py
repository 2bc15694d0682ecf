"""The benchmark task configs read the real datasets in ../shared/data (skipped when that folder is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from alpaca_lightning.errors import DataError
from alpaca_lightning.pipeline import load_splits
from tests.conftest import compose_config

EXPECTED = {  # task: (classes, test rows)
    "sst2": (2, 872),
    "agnews": (4, 7600),
    "trec6": (6, 500),
    "mr": (2, 2000),
}


def data_dir() -> Path:
    return Path(compose_config([]).paths.data_dir)


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_benchmark_task_loads(task: str) -> None:
    if not data_dir().is_dir():
        pytest.skip(f"{data_dir()} is absent")
    cfg = compose_config([f"task={task}", "split.labels_per_class=8", "split.val_per_class=8", "split.val_size=null",
                          "split.pool_size=500"])
    splits = load_splits(cfg)
    classes, test_rows = EXPECTED[task]
    assert np.bincount(splits.labelled.labels, minlength=classes).tolist() == [8] * classes
    assert len(splits.test) == test_rows and len(splits.pool) == 500
    assert set(np.unique(splits.test.labels)) == set(range(classes))


def test_missing_data_root_is_named(tmp_path) -> None:
    cfg = compose_config(["task=sst2", f"paths.data_dir={tmp_path}/nowhere"])
    with pytest.raises(DataError, match=r"nowhere/sst2_glue/train.tsv.*ALPACA_DATA_DIR"):
        load_splits(cfg)
