"""The benchmark task configs read their datasets under paths.data_dir: the fixture datasets, and the real ones in
../shared/data where present (skipped where absent)."""

from __future__ import annotations

import numpy as np
import pytest

from alpaca_lightning.errors import DataError
from alpaca_lightning.pipeline import load_splits
from tests.conftest import compose_config

CLASSES = {"sst2": 2, "agnews": 4, "trec6": 6, "mr": 2}
TEST_ROWS = {  # per data root; MR has no test file: a fixed set is held out of its one file
    "shared": {"sst2": 872, "agnews": 7600, "trec6": 500, "mr": 2000},
    "fixture": {"sst2": 16, "agnews": 16, "trec6": 18, "mr": 10},
}


@pytest.mark.parametrize("task", sorted(CLASSES))
def test_benchmark_task_loads(task: str, data_root) -> None:
    k = data_root.k
    holdout = ["task.test_holdout_size=10"] if task == "mr" and data_root.name == "fixture" else []
    cfg = compose_config([f"task={task}", f"split.labels_per_class={k}", f"split.val_per_class={k}",
                          "split.val_size=null", "split.pool_size=10", *holdout])
    splits = load_splits(cfg)
    classes = CLASSES[task]
    assert np.bincount(splits.labelled.labels, minlength=classes).tolist() == [k] * classes
    assert np.bincount(splits.validation.labels, minlength=classes).tolist() == [k] * classes
    assert len(splits.test) == TEST_ROWS[data_root.name][task] and len(splits.pool) == 10
    assert set(np.unique(splits.test.labels)) == set(range(classes))


def test_missing_data_root_is_named(tmp_path) -> None:
    cfg = compose_config(["task=sst2", f"paths.data_dir={tmp_path}/nowhere"])
    with pytest.raises(DataError, match=r"nowhere/sst2_glue/train.tsv.*ALPACA_DATA_DIR"):
        load_splits(cfg)
