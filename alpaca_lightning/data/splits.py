"""Turn a task's sources into the four splits of a few-label experiment.

labelled   K examples per class, drawn from the training source with the run's seed
pool       the rest of the training source (+ an optional unlabelled source), capped if asked. Its gold labels
           are kept in ``TextSplit.labels`` for diagnostics only: the DataModule never serves them for training.
validation a source of its own, or drawn from the training source (K per class, or a fixed size)
test       a source of its own, or a held-out part of the training source with a fixed seed (same for every seed)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from alpaca_lightning.console import warn
from alpaca_lightning.errors import DataError

UNKNOWN_LABEL = -1
Text = str | tuple[str, str]


@dataclass
class TextSplit:
    """Texts (a string or a pair of strings each) and integer labels (-1 where unknown)."""

    texts: list[Text]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.texts)

    def subset(self, positions: Sequence[int]) -> TextSplit:
        positions = np.asarray(positions, dtype=np.int64)
        return TextSplit([self.texts[i] for i in positions], self.labels[positions])

    @staticmethod
    def concat(parts: list[TextSplit]) -> TextSplit:
        return TextSplit([t for p in parts for t in p.texts], np.concatenate([p.labels for p in parts]))


@dataclass
class TaskSplits:
    label_names: list[str]
    labelled: TextSplit
    pool: TextSplit
    validation: TextSplit
    test: TextSplit | None
    info: dict[str, Any] = field(default_factory=dict)

    def sizes(self) -> dict[str, int]:
        return {
            "labelled": len(self.labelled),
            "pool": len(self.pool),
            "validation": len(self.validation),
            "test": len(self.test) if self.test is not None else 0,
        }


@dataclass
class TaskSpec:
    """What a task config says about its data (see conf/task/*.yaml)."""

    name: str
    label_names: list[str]
    text_columns: list[str]
    label_column: str
    sources: dict[str, Any]
    label_values: list[Any] | None = None
    drop_labels: list[Any] = field(default_factory=list)
    deduplicate: bool = False
    test_holdout_size: int | None = None
    test_holdout_seed: int = 1234


def frame_to_split(frame: pd.DataFrame, spec: TaskSpec, where: str, require_labels: bool = True) -> TextSplit:
    """Select the text and label columns of a loaded source, map labels to indices and check them."""
    missing = [c for c in spec.text_columns if c not in frame.columns]
    if require_labels and spec.label_column not in frame.columns:
        missing.append(spec.label_column)
    if missing:
        raise DataError(
            f"Column(s) {missing} not found in {where}; its columns are {list(map(str, frame.columns))}. "
            f"Set task.text_columns / task.label_column to the right names (or column_names for a file "
            f"without a header)."
        )
    if require_labels and spec.drop_labels:
        drop = {str(v) for v in spec.drop_labels}
        frame = frame[~frame[spec.label_column].astype(str).isin(drop)]
    texts = _texts(frame, spec.text_columns)
    if not require_labels or spec.label_column not in frame.columns:
        return TextSplit(texts, np.full(len(texts), UNKNOWN_LABEL, dtype=np.int64))
    return TextSplit(texts, map_labels(frame[spec.label_column], spec, where))


def _texts(frame: pd.DataFrame, columns: list[str]) -> list[Text]:
    cols = [frame[c].fillna("").astype(str).tolist() for c in columns]
    if len(cols) == 1:
        return cols[0]
    if len(cols) == 2:
        return list(zip(cols[0], cols[1]))
    raise DataError(f"task.text_columns has {len(columns)} columns; use one (a text) or two (a text pair).")


def map_labels(raw: pd.Series, spec: TaskSpec, where: str) -> np.ndarray:
    """Label indices; errors name the data row by its number in the source (0 = first row after the header)."""
    values = spec.label_values if spec.label_values is not None else spec.label_names
    if len(values) != len(spec.label_names):
        raise DataError(
            f"task.label_values has {len(values)} entries but task.label_names has {len(spec.label_names)}; "
            f"give one raw value per label name, in the same order."
        )
    index = {label_key(v): i for i, v in enumerate(values)}
    labels = np.empty(len(raw), dtype=np.int64)
    for position, (row, value) in enumerate(raw.items()):
        key = label_key(value)
        if key == "":
            raise DataError(
                f"The label of data row {row} in {where} (column '{spec.label_column}') is missing (empty or NaN). "
                f"Fill it in, or remove the row."
            )
        if key not in index:
            raise DataError(
                f"Label '{value}' in {where} (column '{spec.label_column}', data row {row}) is not one of the "
                f"task's labels {list(values)}. Add it to task.label_names (and task.label_values), or list it "
                f"in task.drop_labels to skip such rows.{_numeric_hint(key, values)}"
            )
        labels[position] = index[key]
    return labels


def label_key(value: Any) -> str:
    """A raw label as text: missing values (None, NaN) become "" and whole floats lose their ".0" (parquet and
    pandas turn an integer column with a gap into floats)."""
    if value is None or value is pd.NA or (isinstance(value, (float, np.floating)) and np.isnan(value)):
        return ""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()


def _numeric_hint(key: str, values: list[Any]) -> str:
    if key.lstrip("-").isdigit() and not any(label_key(v).lstrip("-").isdigit() for v in values):
        return (f" The column holds numbers where names are expected: map them with task.label_values, e.g. "
                f"task.label_values=[{','.join(str(i) for i in range(len(values)))}].")
    return ""


def load_source(spec: TaskSpec, name: str, require_labels: bool = True) -> TextSplit | None:
    source = spec.sources.get(name)
    if source is None:
        return None
    where = f"{source.describe()} (task.sources.{name})"
    frame = source.load()
    if len(frame) == 0:
        raise DataError(
            f"{where} has no data rows (a header only?). Point task.sources.{name} at the file with the data."
        )
    split = frame_to_split(frame, spec, where, require_labels)
    if spec.deduplicate:
        split = split.subset(_first_occurrences(split.texts))
    return split


def _first_occurrences(texts: list[Text]) -> list[int]:
    seen: set[Text] = set()
    keep = []
    for i, text in enumerate(texts):
        if text not in seen:
            seen.add(text)
            keep.append(i)
    return keep


def _sample_per_class(
    labels: np.ndarray, per_class: int, rng: np.random.Generator, label_names: list[str], purpose: str
) -> np.ndarray:
    chosen = []
    for cls, name in enumerate(label_names):
        members = np.flatnonzero(labels == cls)
        if len(members) < per_class:
            raise DataError(
                f"Class '{name}' has only {len(members)} examples left in the training source, but {purpose} "
                f"needs {per_class} per class. Lower split.labels_per_class (or split.val_per_class), or add data."
            )
        chosen.append(rng.choice(members, size=per_class, replace=False))
    return np.sort(np.concatenate(chosen))


def build_splits(
    spec: TaskSpec,
    seed: int,
    labels_per_class: int | None,
    val_per_class: int | None = None,
    val_size: int | None = None,
    pool_size: int | None = None,
    test_size: int | None = None,
) -> TaskSplits:
    train = load_source(spec, "train")
    if train is None:
        raise DataError(f"Task '{spec.name}' has no task.sources.train; every task needs one.")
    remaining = np.arange(len(train))

    test = load_source(spec, "test")
    if test is None and spec.test_holdout_size:
        # The held-out test set depends on a fixed seed only, so every run seed is scored on the same examples.
        holdout_rng = np.random.default_rng(spec.test_holdout_seed)
        held = np.sort(holdout_rng.choice(remaining, size=min(spec.test_holdout_size, len(remaining)), replace=False))
        test = train.subset(held)
        remaining = np.setdiff1d(remaining, held)

    if test is not None and test_size is not None and len(test) > test_size:
        # A fixed subset (same seed as the hold-out): cheaper scoring, identical for every run seed.
        fixed = np.random.default_rng(spec.test_holdout_seed)
        test = test.subset(np.sort(fixed.choice(len(test), size=test_size, replace=False)))

    rng = np.random.default_rng(seed)
    validation = load_source(spec, "validation")
    if validation is None:
        if val_per_class:
            val_pos = remaining[
                _sample_per_class(train.labels[remaining], val_per_class, rng, spec.label_names, "validation")
            ]
        elif val_size:
            val_pos = np.sort(rng.choice(remaining, size=min(val_size, len(remaining)), replace=False))
        else:
            raise DataError(
                f"Task '{spec.name}' has no validation source; set split.val_per_class or split.val_size to draw one."
            )
        validation = train.subset(val_pos)
        remaining = np.setdiff1d(remaining, val_pos)

    if labels_per_class is None:  # full supervision: every remaining example is labelled (capped at pool_size)
        labelled_pos = remaining
        if pool_size is not None and len(remaining) > pool_size:
            labelled_pos = np.sort(rng.choice(remaining, size=pool_size, replace=False))
    else:
        labelled_pos = remaining[
            _sample_per_class(train.labels[remaining], labels_per_class, rng, spec.label_names, "the labelled set")
        ]
    labelled = train.subset(labelled_pos)
    remaining = np.setdiff1d(remaining, labelled_pos) if labels_per_class is not None else remaining[:0]

    pool_parts = [train.subset(remaining)]
    extra = load_source(spec, "unlabelled", require_labels=False)
    if extra is not None:
        pool_parts.append(extra)
    pool = TextSplit.concat(pool_parts)
    if pool_size is not None and len(pool) > pool_size:
        pool = pool.subset(np.sort(rng.choice(len(pool), size=pool_size, replace=False)))
    info = {"task": spec.name, "seed": seed, "labels_per_class": labels_per_class, "train_source_size": len(train)}
    splits = TaskSplits(list(spec.label_names), labelled, pool, validation, test, info)
    splits.info["duplicates"] = duplicates_across_splits(splits)
    if splits.info["duplicates"]:
        warn(
            f"task '{spec.name}': the same text (after lowercasing and collapsing spaces) is in two splits: "
            f"{splits.info['duplicates']} (pairs of splits: number of distinct shared texts). Scores on a split that "
            f"shares texts with the training data are optimistic; set task.deduplicate=true for duplicates inside a "
            f"source, and remove them across the source files. They are kept as they are (counted in results.json)."
        )
    return splits


def normalized(text: Text) -> str:
    parts = text if isinstance(text, tuple) else (text,)
    return "\x1f".join(" ".join(part.lower().split()) for part in parts)


def duplicates_across_splits(splits: TaskSplits) -> dict[str, int]:
    """How many distinct normalized texts each pair of splits shares (only the pairs that share any)."""
    named = {"labelled": splits.labelled, "validation": splits.validation, "pool": splits.pool, "test": splits.test}
    texts = {name: {normalized(t) for t in split.texts} for name, split in named.items() if split is not None}
    names = list(texts)
    counts = {}
    for i, first in enumerate(names):
        for second in names[i + 1:]:
            shared = len(texts[first] & texts[second])
            if shared:
                counts[f"{first}/{second}"] = shared
    return counts
