"""Hostile and broken inputs (issue 12, part 4): one table, each row a bad or unusual input and what must happen.

A row's ``act`` builds its input under ``tmp_path`` and runs the code under test. Either it must raise ``error``
with a message matching ``match`` (the message names the file, row or key, and the fix), or, with no ``error``,
its ``check`` verifies the outcome (CRLF read right, a long text truncated, ...). Most rows call the data, artifact
and config functions directly; two rows run the tiny model end to end.
"""

from __future__ import annotations

import errno
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from alpaca_lightning import artifacts
from alpaca_lightning.artifacts import atomic_write_json, is_complete
from alpaca_lightning.data.datamodule import encode
from alpaca_lightning.data.sources import FileSource
from alpaca_lightning.data.splits import TaskSpec, TextSplit, build_splits
from alpaca_lightning.errors import AlpacaError, ConfigError, DataError, StorageError
from alpaca_lightning.models.backbone import PretrainedBackbone, TinyBertBackbone, train_wordpiece_tokenizer
from alpaca_lightning.once import produce_once
from alpaca_lightning.pipeline import run
from alpaca_lightning.run_info import CONFIG_FILE, check_same_config, save_run_info
from tests.conftest import compose_config, synthetic_rows, tiny_overrides, write_csv

GOOD = "text,label\ngood film,pos\nbad film,neg\n"


@dataclass
class Row:
    name: str
    act: Callable[[Path], Any]
    error: type[Exception] | None = None
    match: str = ""
    check: Callable[[Any, Path], None] | None = None  # the outcome of a row that must succeed
    after: Callable[[Path], None] | None = None  # what must hold after the error (nothing half-written)


def spec(train: Path | FileSource, **fields: Any) -> TaskSpec:
    source = train if isinstance(train, FileSource) else FileSource(str(train))
    values = dict(name="t", label_names=["neg", "pos"], text_columns=["text"], label_column="label",
                  sources={"train": source})
    values.update(fields)
    return TaskSpec(**values)


def load_bytes(data: bytes, name: str = "t.csv", **source: Any) -> Callable[[Path], pd.DataFrame]:
    def act(tmp: Path) -> pd.DataFrame:
        (tmp / name).write_bytes(data)
        return FileSource(str(tmp / name), **source).load()
    return act


def split_rows(rows: list[tuple[str, str]], **build: Any) -> Callable[[Path], Any]:
    def act(tmp: Path) -> Any:
        return build_splits(spec(write_csv(tmp / "t.csv", rows)), seed=0, **build)
    return act


def split_file(name: str, data: bytes, task: dict[str, Any] | None = None, **build: Any) -> Callable[[Path], Any]:
    def act(tmp: Path) -> Any:
        (tmp / name).write_bytes(data)
        return build_splits(spec(tmp / name, **(task or {})), seed=0, **build)
    return act


def two_classes(n: int) -> list[tuple[str, str]]:
    return [(f"good film {i}", "pos") for i in range(n)] + [(f"bad film {i}", "neg") for i in range(n)]


# --- rows that need a few lines of their own ---------------------------------------------------------------------

def single_example_class(tmp: Path) -> Any:
    train = FileSource(str(write_csv(tmp / "train.csv", two_classes(10)[:11])))  # 10 pos, 1 neg
    validation = FileSource(str(write_csv(tmp / "val.csv", two_classes(2))))
    return build_splits(spec(train, sources={"train": train, "validation": validation}), seed=0, labels_per_class=2)


def label_text_lines_crlf(tmp: Path) -> pd.DataFrame:
    (tmp / "t.txt").write_bytes(b"pos a good film\r\nneg a bad film\r\n")
    return FileSource(str(tmp / "t.txt"), format="label_text_lines").load()


def parquet_labels_with_a_gap(tmp: Path) -> Any:
    frame = pd.DataFrame({"text": ["a", "b", "c", "d"], "label": [0.0, 1.0, np.nan, 1.0]})  # floats: NaN forces them
    frame.to_parquet(tmp / "t.parquet")
    return build_splits(spec(tmp / "t.parquet", label_values=[0, 1]), seed=0, labels_per_class=1, val_size=1)


def parquet_whole_float_labels(tmp: Path) -> Any:
    frame = pd.DataFrame({"text": [f"t{i}" for i in range(8)], "label": [0.0, 1.0] * 4})
    frame.to_parquet(tmp / "t.parquet")
    return build_splits(spec(tmp / "t.parquet", label_values=[0, 1]), seed=0, labels_per_class=2, val_size=2)


def long_text_is_truncated(tmp: Path) -> tuple[Any, Any]:
    long_text = "word " * 20_000  # 100,000 characters
    path = write_csv(tmp / "t.csv", [(long_text, "pos")] + two_classes(5))
    loaded = FileSource(str(path)).load()
    tokenizer = train_wordpiece_tokenizer(loaded["text"].tolist(), vocab_size=200)
    return loaded, encode(tokenizer, TextSplit(loaded["text"].tolist(), np.zeros(len(loaded))), max_length=64)


def duplicates_across_splits(tmp: Path) -> Any:
    rows = two_classes(30)
    test_rows = [("  GOOD film 3 ", "pos"), ("bad   FILM 4", "neg"), ("unseen film", "pos")]  # case/space variants
    sources = {"train": FileSource(str(write_csv(tmp / "train.csv", rows))),
               "test": FileSource(str(write_csv(tmp / "test.csv", test_rows)))}
    return build_splits(spec(tmp / "train.csv", sources=sources), seed=0, labels_per_class=4, val_size=4)


def two_hundred_classes(tmp: Path) -> Any:
    names = [f"c{i}" for i in range(200)]
    rows = [(f"text {i} of {name}", name) for name in names for i in range(5)]
    path = write_csv(tmp / "t.csv", rows)
    return build_splits(spec(path, label_names=names), seed=0, labels_per_class=2, val_size=50)


def model_folder_without(*files: str) -> Callable[[Path], Any]:
    def act(tmp: Path) -> Any:
        folder = Path(TinyBertBackbone(vocab_size=60).materialize(tmp / "run", ["a tiny corpus"] * 3, seed=0))
        for name in files:
            (folder / name).unlink()
        return PretrainedBackbone(str(folder)).materialize(tmp / "run2", [], seed=0)
    return act


def run_record(tmp: Path, *overrides: str, artifacts_too: bool = True) -> Any:
    """A folder holding the record of a finished tiny run, then the same folder's config with ``overrides``."""
    task = {"train": tmp / "train.csv", "test": tmp / "test.csv"}
    base = tiny_overrides(task, tmp / "out")
    save_run_info(compose_config(base), tmp / "out")
    if artifacts_too:
        (tmp / "out" / "rounds").mkdir()
    return compose_config(base + list(overrides))


def folder_of_the_old_config_shape(tmp: Path) -> Any:
    """A run folder recorded when calibration was a selftrain setting rather than a config group."""
    cfg = run_record(tmp)
    saved = OmegaConf.load(tmp / "out" / CONFIG_FILE)
    saved.selftrain.calibration = saved.pop("calibration")._target_.rsplit(".", 1)[-1]
    OmegaConf.save(saved, tmp / "out" / CONFIG_FILE)
    check_same_config(cfg, tmp / "out")


def reused_folder(*overrides: str, artifacts_too: bool = True) -> Callable[[Path], Any]:
    def act(tmp: Path) -> Any:
        check_same_config(run_record(tmp, *overrides, artifacts_too=artifacts_too), tmp / "out")
        return "accepted"
    return act


def run_in_reused_folder(tmp: Path) -> Any:
    """The pipeline checks before it reads data or trains: the data files do not even exist."""
    return run(run_record(tmp, "seed=3", "model.classifier.optimizer.lr=0.1"))


def no_space() -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


class HalfWriter:
    """A file handle on a disk that fills up halfway through the write."""

    def __init__(self, handle: Any) -> None:
        self.handle = handle

    def __enter__(self) -> HalfWriter:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.handle.close()

    def write(self, text: str) -> None:
        self.handle.write(text[: len(text) // 2])
        self.handle.flush()
        raise no_space()


def disk_full_json(tmp: Path) -> Any:
    atomic_write_json(tmp / "results.json", {"acc": 0.5})  # a previous complete version
    real_fdopen = os.fdopen
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(artifacts.os, "fdopen", lambda fd, *a, **k: HalfWriter(real_fdopen(fd, *a, **k)))
        atomic_write_json(tmp / "results.json", {"acc": 1.0, "more": "x" * 1000})


def old_json_intact(tmp: Path) -> None:
    assert json.loads((tmp / "results.json").read_text()) == {"acc": 0.5}
    assert [p.name for p in tmp.iterdir()] == ["results.json"], "a temporary file was left behind"


def write_partial_predictions(_: None, folder: Path) -> None:
    (folder / "probs.npy").write_bytes(b"partial")
    raise no_space()


def disk_full_folder(tmp: Path) -> Any:
    return produce_once(tmp / "predictions", lambda: None, write_partial_predictions, "predictions")


def folder_not_trusted(tmp: Path) -> None:
    assert list(tmp.iterdir()) == [], "a partial folder was left behind"
    computed = produce_once(tmp / "predictions", lambda: None, lambda _, f: (f / "probs.npy").write_bytes(b"ok"), "p")
    assert computed and is_complete(tmp / "predictions")  # the next run computes it again


# --- checks of rows that must succeed ----------------------------------------------------------------------------

def crlf_read_right(frame: pd.DataFrame, _: Path) -> None:
    assert frame["text"].tolist() == ["good film", "bad film"] and frame["label"].tolist() == ["pos", "neg"]


def lines_read_right(frame: pd.DataFrame) -> None:
    assert frame.values.tolist() == [["pos", "a good film"], ["neg", "a bad film"]]


def multiline_read_right(frame: pd.DataFrame, _: Path) -> None:
    assert frame["text"].tolist() == ['line one\nline two, with "quotes"', "bad film"]
    assert frame["label"].tolist() == ["pos", "neg"]


def gap_labels_mapped(splits: Any, _: Path) -> None:
    assert sorted(splits.labelled.texts + splits.validation.texts + splits.pool.texts) == [f"t{i}" for i in range(8)]
    assert [int(t[1]) % 2 for t in splits.labelled.texts] == splits.labelled.labels.tolist()


def truncated(outcome: tuple[Any, Any], _: Path) -> None:
    loaded, encoded = outcome
    assert len(loaded["text"][0]) == 100_000  # read whole ...
    assert encoded.lengths[0] == 64 and encoded.lengths.max() == 64  # ... and cut to data.max_length


def duplicates_counted(splits: Any, _: Path) -> None:
    counts = splits.info["duplicates"]
    assert sum(counts.values()) == 2 and all(pair.endswith("/test") for pair in counts), counts
    assert len(splits.test) == 3 and len(splits.pool) == 60 - 8 - 4  # counted and reported, nothing removed


def every_class_present(splits: Any, _: Path) -> None:
    assert np.bincount(splits.labelled.labels, minlength=200).tolist() == [2] * 200
    assert len(splits.labelled) == 400 and len(splits.pool) == 1000 - 400 - 50


def accepted(outcome: Any, _: Path) -> None:
    assert outcome == "accepted"


ROWS = [
    Row("empty file", load_bytes(b""), DataError, r"t\.csv is empty \(0 bytes\)"),
    Row("header only", split_file("t.csv", b"text,label\n", labels_per_class=1, val_size=1), DataError,
        r"t\.csv \(task\.sources\.train\) has no data rows"),
    Row("NUL bytes", load_bytes(b"text,label\ngood film,pos\nba\x00d film,neg\n"), DataError,
        r"t\.csv contains a NUL byte \(line 3\).*encoding"),
    Row("invalid UTF-8 with the wrong encoding",
        load_bytes("text,label\nok,pos\nun film réussi,pos\n".encode("latin-1")), DataError,
        r"t\.csv is not valid utf-8: invalid continuation byte at byte \d+ \(line 3\).*latin-1"),
    Row("unknown encoding name", load_bytes(GOOD.encode(), encoding="utf8x"), DataError,
        r"Unknown encoding 'utf8x' for .*t\.csv.*latin-1"),
    Row("UTF-16 file read as UTF-8", load_bytes(GOOD.encode("utf-16")), DataError,
        r"t\.csv is not valid utf-8.*line 1"),
    Row("UTF-8 byte-order mark (CSV)", load_bytes(b"\xef\xbb\xbf" + GOOD.encode()), check=crlf_read_right),
    Row("UTF-8 byte-order mark (JSONL)", load_bytes(b'\xef\xbb\xbf{"text": "good film", "label": "pos"}\n'
                                                    b'{"text": "bad film", "label": "neg"}\n', name="t.jsonl"),
        check=crlf_read_right),
    Row("CRLF line ends (CSV)", load_bytes(GOOD.replace("\n", "\r\n").encode()), check=crlf_read_right),
    Row("CRLF line ends (label_text_lines)", label_text_lines_crlf,
        check=lambda frame, _: lines_read_right(frame)),
    Row("quotes spanning lines", load_bytes(b'text,label\n"line one\r\nline two, with ""quotes""",pos\nbad film,neg\n'),
        check=multiline_read_right),
    Row("quote never closed", load_bytes(b'text,label\n"good film,pos\nbad film,neg\n'), DataError,
        r"t\.csv is not a well-formed CSV file: .*EOF inside string starting at row 1.*quote never closed"),
    Row("more fields than the header", load_bytes(b"text,label\ngood film,pos\nbad, film,neg\n"), DataError,
        r"t\.csv is not a well-formed CSV file: .*Expected 2 fields in line 3, saw 3"),
    Row("first row longer than the header", load_bytes(b"text,label\nbad, film,neg\ngood film,pos\n"), DataError,
        r"t\.csv is not a well-formed CSV file"),
    Row("JSONL line that is not JSON", load_bytes(b'{"text": "a", "label": "pos"}\n{"text": "b", "label":\n',
                                                  name="t.jsonl"), DataError, r"t\.jsonl line 2 is not valid JSON"),
    Row("JSONL line that is not an object", load_bytes(b'{"text": "a", "label": "pos"}\n["b", "neg"]\n',
                                                       name="t.jsonl"), DataError, r"t\.jsonl line 2 is a JSON list"),
    Row("label missing in a CSV", split_file("t.csv", b"text,label\na,pos\nb,\nc,neg\n", labels_per_class=1,
                                             val_size=1), DataError,
        r"label of data row 1 in .*t\.csv \(task\.sources\.train\) \(column 'label'\) is missing"),
    Row("label null in JSONL", split_file("t.jsonl", b'{"text": "a", "label": "pos"}\n{"text": "b", "label": null}\n',
                                          labels_per_class=1, val_size=1), DataError,
        r"label of data row 1 in .*t\.jsonl.*is missing"),
    Row("label NaN in parquet", parquet_labels_with_a_gap, DataError, r"label of data row 2 in .*t\.parquet.*missing"),
    Row("whole-number float labels (parquet)", parquet_whole_float_labels, check=gap_labels_mapped),
    Row("numbers where label names are expected", split_rows([(f"t{i}", str(i % 2)) for i in range(10)],
                                                             labels_per_class=1, val_size=1), DataError,
        r"Label '0' in .*t\.csv.*holds numbers where names are expected.*task\.label_values=\[0,1\]"),
    Row("a class with a single example", single_example_class, DataError,
        r"Class 'neg' has only 1 examples left in the training source, but the labelled set needs 2 per class\. "
        r"Lower split\.labels_per_class"),
    Row("missing text column", split_file("t.csv", b"sentence,label\na,pos\n", labels_per_class=1, val_size=1),
        DataError, r"\['text'\] not found in .*t\.csv.*columns are \['sentence', 'label'\].*text_columns"),
    Row("text of 100k characters", long_text_is_truncated, check=truncated),
    Row("duplicate texts across splits", duplicates_across_splits, check=duplicates_counted),
    Row("200 classes", two_hundred_classes, check=every_class_present),
    Row("model folder without weights", model_folder_without("model.safetensors"), AlpacaError,
        r"The model folder .*backbone lacks weights \(one of \['model\.safetensors'.*name_or_path"),
    Row("model folder without config.json", model_folder_without("config.json"), AlpacaError,
        r"backbone lacks config\.json\."),
    Row("model folder without a tokenizer", model_folder_without("tokenizer.json"), AlpacaError,
        r"backbone lacks a tokenizer"),
    Row("run folder of another config", reused_folder("split.labels_per_class=8", "selftrain.max_rounds=3"),
        ConfigError, r"out already holds a run of another config; these keys differ: selftrain\.max_rounds: 2 -> 3; "
                     r"split\.labels_per_class: 16 -> 8\. Give a new output folder.*allow_config_change=true"),
    Row("run folder made before calibration became a config group", folder_of_the_old_config_shape, ConfigError,
        r"calibration\._target_: <absent> -> .*selftrain\.calibration: NoCalibration -> <absent>\. The folder was "
        r"made before the round loop's choices became config groups \(calibration; .* calibration=none\)"),
    Row("run folder of another config, in the pipeline", run_in_reused_folder, ConfigError,
        r"model\.classifier\.optimizer\.lr: 0\.003 -> 0\.1; seed: 0 -> 3"),
    Row("run folder reused with result-neutral changes", reused_folder(
        "trainer.enable_progress_bar=true", "logger=wandb", "launcher=joblib", "optimized_metric=best:val/f1_macro",
        "trainer.log_every_n_steps=1"), check=accepted),
    Row("run folder of another config, allowed", reused_folder("seed=5", "allow_config_change=true"), check=accepted),
    Row("run folder with only the record of a failed start", reused_folder("seed=5", artifacts_too=False),
        check=accepted),
    Row("disk full writing a file", disk_full_json, StorageError,
        r"Writing .*results\.json failed: No space left on device\. Nothing half-written", after=old_json_intact),
    Row("disk full writing an artifact folder", disk_full_folder, StorageError,
        r"Writing .*predictions failed: No space left on device.*run the same command again",
        after=folder_not_trusted),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.name for row in ROWS])
def test_hostile_input(row: Row, tmp_path: Path) -> None:
    if row.error is None:
        row.check(row.act(tmp_path), tmp_path)
        return
    with pytest.raises(row.error, match=row.match):
        row.act(tmp_path)
    if row.after is not None:
        row.after(tmp_path)


def test_the_table_is_large_enough() -> None:
    assert len(ROWS) >= 20 and len({row.name for row in ROWS}) == len(ROWS)


def test_duplicates_are_warned_once_and_reach_results(tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING, logger="alpaca_lightning"):
        splits = duplicates_across_splits(tmp_path)
    warnings = [r for r in caplog.records if "in two splits" in r.getMessage()]
    assert len(warnings) == 1 and str(splits.info["duplicates"]) in warnings[0].getMessage()


def short_run(tmp: Path, train_rows: list[tuple[str, str]], *overrides: str) -> dict[str, Any]:
    """The tiny model, one supervised epoch and one pseudo-label round that keeps the whole pool (filters=[])."""
    train = write_csv(tmp / "train.csv", train_rows)
    base = [o for o in tiny_overrides({"train": train, "test": train}, tmp / "out") if not o.startswith("filters")]
    return run(compose_config(base + [
        "filters=[]", "selftrain.max_rounds=1", "selftrain.supervised_epochs=1", "selftrain.student_epochs=1",
        *overrides,
    ]))


def test_a_pool_of_one_example_runs_end_to_end(tmp_path) -> None:
    results = short_run(tmp_path, synthetic_rows(40, seed=4), "split.labels_per_class=4", "split.val_size=10",
                        "split.pool_size=1")
    assert results["splits"]["pool"] == 1 and results["rounds_run"] == 2
    pseudo = pd.read_csv(tmp_path / "out" / "rounds" / "round_1" / "pseudo_labels.csv")
    assert pseudo["index"].tolist() == [0]


def test_two_hundred_classes_run_end_to_end(tmp_path) -> None:
    names = [f"c{i}" for i in range(200)]
    rows = [(f"text {i} of topic {name}", name) for name in names for i in range(2)]
    test = write_csv(tmp_path / "test.csv", [(f"a test text of topic {name}", name) for name in names[:20]])
    results = short_run(tmp_path, rows, f"task.label_names=[{','.join(names)}]", "split.labels_per_class=1",
                        "split.val_size=20", "split.pool_size=20", f"task.sources.test.path={test}",
                        "data.batch_size=32")
    assert results["splits"] == {"labelled": 200, "pool": 20, "validation": 20, "test": 20}
    assert results["rounds_run"] == 2 and results["duplicates"] == {}
    pseudo = pd.read_csv(tmp_path / "out" / "rounds" / "round_1" / "pseudo_labels.csv")
    assert len(pseudo) == 20 and pseudo["label"].between(0, 199).all()
    assert [c for c in pseudo.columns if c.startswith("prob_")] == [f"prob_{name}" for name in names]
    assert (tmp_path / "out" / "rounds" / "round_1" / "confusion.png").is_file()
