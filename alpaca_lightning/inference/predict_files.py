"""``alpaca-predict RUN_DIR INPUT``: label a file of texts with a finished run's classifier.

    alpaca-predict outputs/rotten_tomatoes/2026-12-03_10-00-00 reviews.csv               # -> reviews.predictions.csv
    alpaca-predict RUN reviews.parquet -o labelled.jsonl --round 0                         # round 0's model
    alpaca-predict RUN big.csv hardware=gpu data.predict_batch_size=512                    # settings for prediction
    alpaca-predict RUN big.csv hardware=ddp                                                # every GPU; order kept

The output holds the input's rows and columns, plus ``predicted_label``, ``predicted_probability`` and one
``probability_<label>`` column per class; for a token task (named entities), ``predicted_tags`` and
``tag_probabilities``, one per word (JSON lists in CSV and TSV). The input is read and predicted in chunks of
``--chunk-size`` rows, so memory follows the chunk, not the file; each finished chunk is kept in
``<output>.parts/``, so a killed prediction run again with the same command resumes at its first unfinished chunk.
The output file appears, complete, at the end (written to a temporary name and renamed). Where the input has the
task's label column, the accuracy on those rows is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from omegaconf import OmegaConf

from alpaca_lightning.artifacts import atomic_write, atomic_write_json, read_json
from alpaca_lightning.console import info
from alpaca_lightning.data.sources import format_from_name
from alpaca_lightning.data.splits import label_key
from alpaca_lightning.distributed import barrier, is_global_zero
from alpaca_lightning.errors import AlpacaError, DataError
from alpaca_lightning.inference.classifier import RunClassifier, check_examples, label_names_of
from alpaca_lightning.inference.run_folder import open_run
from alpaca_lightning.inference.tables import ChunkWriter, read_chunks, table_format
from alpaca_lightning.killpoints import kill_point

PREDICTED = "predicted_label"
CONFIDENCE = "predicted_probability"
PREDICTED_TAGS = "predicted_tags"  # token tasks: one tag per word
TAG_PROBABILITIES = "tag_probabilities"
DEFAULT_CHUNK_SIZE = 20_000


@dataclass(frozen=True)
class Columns:
    """Where the texts (and, if present, the gold labels) are in the input."""

    text: list[str]
    label: str | None


def probability_column(label: str) -> str:
    return f"probability_{label}"


def default_output(input_path: Path) -> Path:
    table_format(input_path)  # a name without a known format suffix is refused here
    fmt_suffix = next(s for s in reversed(input_path.suffixes) if format_from_name(Path("x" + s)))  # not .gz
    stem = input_path.name[: input_path.name.lower().rindex(fmt_suffix.lower())]
    return input_path.with_name(f"{stem}.predictions{fmt_suffix}")


# --- one chunk -------------------------------------------------------------------------------------------------
def chunk_examples(frame: pd.DataFrame, columns: Columns, first_row: int, clf: RunClassifier) -> list:
    missing = [c for c in columns.text if c not in frame.columns]
    if missing:
        raise DataError(f"Text column(s) {missing} are not in the input; its columns are "
                        f"{list(map(str, frame.columns))}. Give --text-column NAME (twice for a sentence pair), or "
                        f"rename the column.")
    values = [frame[c].tolist() for c in columns.text]
    for column, column_values in zip(columns.text, values):
        bad = [first_row + i for i, v in enumerate(column_values) if not isinstance(v, (str, list, np.ndarray))]
        if bad:
            raise DataError(f"Column '{column}' holds a missing or non-text value at rows {bad[:10]} (counting from 0 "
                            f"after the header). Fill those rows in or remove them.")
    examples = list(zip(*values)) if clf.pairs else [clf.kind.read_example(v) for v in values[0]]
    check_examples(examples, clf.pairs, first_row)
    return examples


def chunk_gold(frame: pd.DataFrame, columns: Columns, clf: RunClassifier, first_row: int) -> np.ndarray | None:
    """Gold label indices where the input has the task's label column (-1: a row without a usable label)."""
    if columns.label is None or columns.label not in frame.columns:
        return None
    task = OmegaConf.to_container(clf.cfg.task, resolve=True)
    values = task.get("label_values") or clf.label_names
    index = {label_key(v): i for i, v in enumerate(values)}
    dropped = {label_key(v) for v in task.get("drop_labels") or []}
    gold = np.full(len(frame), -1, dtype=np.int64)
    for i, value in enumerate(frame[columns.label].tolist()):
        key = label_key(value)
        if key in index:
            gold[i] = index[key]
        elif key and key not in dropped:
            raise DataError(
                f"Label '{value}' in column '{columns.label}' (row {first_row + i}) is not one of the run's labels "
                f"{list(values)}. The run can only predict those; fix the label, or pass --label-column '' to "
                f"predict without scoring."
            )
    return gold


def prediction_columns(probs: np.ndarray | list[np.ndarray], label_names: list[str]) -> dict[str, Any]:
    """A text's label, its probability and every class's; a token task's sentence: a tag and its probability per
    word."""
    if isinstance(probs, np.ndarray):
        added = {PREDICTED: [label_names[i] for i in probs.argmax(axis=1)], CONFIDENCE: probs.max(axis=1)}
        added.update({probability_column(name): probs[:, j] for j, name in enumerate(label_names)})
        return added
    return {PREDICTED_TAGS: [label_names_of(p, label_names) for p in probs],
            TAG_PROBABILITIES: [p.max(axis=1).tolist() for p in probs]}


def labelled_chunk(frame: pd.DataFrame, probs: np.ndarray | list[np.ndarray], label_names: list[str]) -> pd.DataFrame:
    added = prediction_columns(probs, label_names)
    clash = [c for c in added if c in frame.columns]
    if clash:
        raise DataError(f"The input already has column(s) {clash}, which the output adds. Rename or drop them "
                        f"(e.g. the input is an earlier output).")
    return frame.reset_index(drop=True).assign(**added)


# --- the chunk store: finished chunks survive a kill ---------------------------------------------------------------
class ChunkStore:
    """``<output>.parts/``: ``part-<i>`` files in the output's format and ``part-<i>.json`` counts. A chunk is done
    when its part file exists (written atomically after its counts). A store made for another input, model or
    setting (``manifest.json``) is discarded."""

    def __init__(self, output: Path, fmt: str, manifest: dict[str, Any]) -> None:
        self.folder = output.with_name(output.name + ".parts")
        self.fmt = fmt
        if is_global_zero():
            self._start(manifest)
        barrier()

    def _start(self, manifest: dict[str, Any]) -> None:
        path = self.folder / "manifest.json"
        if path.is_file() and read_json(path) == manifest:
            done = len(list(self.folder.glob(f"part-*.{self.fmt}")))
            if done:
                info(f"resuming: {done} finished chunk(s) in {self.folder}")
            return
        if self.folder.exists():
            info(f"{self.folder} was made for another input, model or setting; starting over")
            shutil.rmtree(self.folder)
        self.folder.mkdir(parents=True)
        atomic_write_json(path, manifest)

    def part(self, i: int) -> Path:
        return self.folder / f"part-{i:06d}.{self.fmt}"

    def is_done(self, i: int) -> bool:
        return self.part(i).is_file()

    def save(self, i: int, frame: pd.DataFrame, counts: dict[str, int]) -> None:
        if is_global_zero():
            atomic_write_json(self.part(i).with_suffix(".json"), counts)
            atomic_write(self.part(i), lambda handle: write_frame(handle, frame, self.fmt, header=i == 0), binary=True)
        barrier()
        kill_point(f"chunk {i} of {self.folder}")

    def counts(self, i: int) -> dict[str, int]:
        return read_json(self.part(i).with_suffix(".json"))


def write_frame(handle, frame: pd.DataFrame, fmt: str, header: bool) -> None:
    writer = ChunkWriter(handle, fmt, header)  # text formats: only the first part carries the header row
    writer.write(frame)
    writer.close()


def assemble(store: ChunkStore, chunks: int, output: Path) -> None:
    """The parts in order, into ``output`` (complete or absent); then the store goes."""
    def write(handle) -> None:
        if store.fmt == "parquet":
            writer = ChunkWriter(handle, "parquet")
            for i in range(chunks):
                writer.write(pd.read_parquet(store.part(i)))
            writer.close()
            return
        for i in range(chunks):
            with open(store.part(i), "rb") as part:
                shutil.copyfileobj(part, handle)

    atomic_write(output, write, binary=True)
    shutil.rmtree(store.folder, ignore_errors=True)


# --- the whole file --------------------------------------------------------------------------------------------
def input_fingerprint(path: Path) -> dict[str, Any]:
    stat = path.stat()
    return {"path": str(path.resolve()), "bytes": stat.st_size, "mtime_ns": stat.st_mtime_ns}


def predict_file(clf: RunClassifier, input_path: Path, output: Path, columns: Columns, chunk_size: int,
                 overrides: list[str]) -> dict[str, Any]:
    """Predict every row of ``input_path`` into ``output``; returns row counts and the accuracy where gold exists."""
    if chunk_size < 1:
        raise AlpacaError(f"--chunk-size must be at least 1, got {chunk_size}.")
    if not input_path.is_file():
        raise DataError(f"Input file not found: {input_path}.")
    fmt = table_format(output)
    manifest = {"input": input_fingerprint(input_path), "run": str(clf.run.run_dir.resolve()),
                "round": clf.run.round_index, "chunk_size": chunk_size, "columns": asdict(columns),
                "overrides": overrides, "format": fmt, "run_config_sha256": clf.run.results.get("config_sha256")}
    store = ChunkStore(output, fmt, manifest)
    rows = labelled = correct = chunks = 0
    for i, frame in enumerate(read_chunks(input_path, chunk_size)):
        chunks = i + 1
        if not store.is_done(i):
            examples = chunk_examples(frame, columns, rows, clf)
            gold = chunk_gold(frame, columns, clf, rows)
            probs = clf.predict_proba(examples, work_dir=store.folder / f".shards-{i}")
            counts = {"rows": len(frame), "labelled": 0, "correct": 0}
            if gold is not None:  # sentence tasks with the label column
                known = gold >= 0
                hits = probs.argmax(axis=1)[known] == gold[known]
                counts.update(labelled=int(known.sum()), correct=int(hits.sum()))
            store.save(i, labelled_chunk(frame, probs, clf.label_names), counts)
            info(f"chunk {i}: rows {rows}-{rows + len(frame) - 1} predicted")
        counts = store.counts(i)
        rows, labelled, correct = rows + counts["rows"], labelled + counts["labelled"], correct + counts["correct"]
    if rows == 0:
        if is_global_zero():
            shutil.rmtree(store.folder, ignore_errors=True)
        raise DataError(f"{input_path} holds no rows: nothing to predict.")
    if is_global_zero():
        assemble(store, chunks, output)
    barrier()
    return {"rows": rows, "labelled": labelled, "accuracy": correct / labelled if labelled else None,
            "output": str(output)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="alpaca-predict", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path, help="a finished alpaca-train run folder (holds results.json)")
    parser.add_argument("input", type=Path, help="texts to label: .csv, .tsv, .jsonl or .parquet")
    parser.add_argument("overrides", nargs="*", help="prediction settings: hardware=<cpu|gpu|ddp|ddp_cpu>, "
                        "hardware.<key>=..., data.predict_batch_size=..., data.max_length=...")
    parser.add_argument("-o", "--output", type=Path, help="default: <input>.predictions.<same format>")
    parser.add_argument("--round", type=int, dest="round_index", help="a kept round's model (default: the reported)")
    parser.add_argument("--text-column", action="append", dest="text_columns",
                        help="the input's text column (twice for a pair); default: the run's task.text_columns, or "
                        "'tokens' for a token task (a list of words, or a text split at white space)")
    parser.add_argument("--label-column", help="gold labels to score against (default: the run's task.label_column "
                        "where the input has it; '' never scores)")
    parser.add_argument("--chunk-size", type=int, default=DEFAULT_CHUNK_SIZE,
                        help=f"rows read and predicted at a time (default {DEFAULT_CHUNK_SIZE})")
    args = parser.parse_intermixed_args(argv)  # settings may come before or after the options
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        clf = RunClassifier(open_run(args.run_dir, args.round_index), args.overrides)
        task = clf.cfg.task
        columns = Columns(list(args.text_columns or task.get("text_columns") or ["tokens"]),
                          (task.get("label_column") if args.label_column is None else args.label_column) or None)
        output = args.output or default_output(args.input)
        summary = predict_file(clf, args.input, output, columns, args.chunk_size, list(args.overrides))
    except AlpacaError as err:
        print(f"alpaca-predict: error: {err}", file=sys.stderr)
        return 2
    if is_global_zero():
        print(f"alpaca-predict: {summary['rows']} rows labelled by round {clf.run.round_index} of {clf.run.run_dir} "
              f"-> {summary['output']}")
        if summary["accuracy"] is not None:
            print(f"accuracy on the {summary['labelled']} rows with a label in '{columns.label}': "
                  f"{100 * summary['accuracy']:.1f}%  ({json.dumps(summary['accuracy'])})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
