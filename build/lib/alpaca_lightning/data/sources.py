"""Readers that turn a local file or a Hugging Face dataset into a pandas DataFrame.

Every source is a small class with ``load() -> DataFrame`` and a ``describe()`` used in error messages; task
configs instantiate them through ``_target_``.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pandas as pd

from alpaca_lightning.errors import DataError

_COMPRESSION_SUFFIXES = {".bz2", ".gz", ".xz", ".zip", ".zst"}
_FORMAT_BY_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
FILE_FORMATS = ("csv", "tsv", "jsonl", "parquet", "label_text_lines")


class FileSource:
    """A local CSV, TSV, JSONL or parquet file, or lines of ``<label> <text>`` (format ``label_text_lines``).

    ``header: false`` reads a file without a header row; ``column_names`` then names its columns.
    """

    def __init__(
        self,
        path: str,
        format: str = "auto",
        encoding: str = "utf-8",
        header: bool = True,
        column_names: list[str] | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        self.format = format
        self.encoding = encoding
        self.header = header
        self.column_names = list(column_names) if column_names is not None else None

    def describe(self) -> str:
        return str(self.path)

    def load(self) -> pd.DataFrame:
        if not self.path.is_file():
            raise DataError(
                f"Data file not found: {self.path}. Check the task's source path, or the data root "
                f"(paths.data_dir, or the ALPACA_DATA_DIR environment variable)."
            )
        fmt = self._resolve_format()
        try:
            frame = self._read(fmt)
        except UnicodeDecodeError as err:
            raise DataError(
                f"{self.path} is not valid {self.encoding} ({err.reason} at byte {err.start}). "
                f"Set the source's `encoding` (for example latin-1)."
            ) from None
        if self.column_names is not None and fmt != "label_text_lines":
            if len(self.column_names) != frame.shape[1]:
                raise DataError(
                    f"{self.path} has {frame.shape[1]} columns but column_names lists {len(self.column_names)}: "
                    f"{self.column_names}. Give one name per column."
                )
            frame.columns = self.column_names
        return frame

    def _resolve_format(self) -> str:
        if self.format != "auto":
            if self.format not in FILE_FORMATS:
                raise DataError(f"Unknown file format '{self.format}' for {self.path}. Use one of {FILE_FORMATS}.")
            return self.format
        suffixes = [s for s in self.path.suffixes if s.lower() not in _COMPRESSION_SUFFIXES]
        suffix = suffixes[-1].lower() if suffixes else ""
        if suffix not in _FORMAT_BY_SUFFIX:
            raise DataError(f"Cannot tell the format of {self.path} from its name. Set the source's `format`.")
        return _FORMAT_BY_SUFFIX[suffix]

    def _read(self, fmt: str) -> pd.DataFrame:
        header = 0 if self.header else None
        if fmt in ("csv", "tsv"):
            sep = "," if fmt == "csv" else "\t"
            # QUOTE_NONE for TSV: GLUE-style files contain unbalanced quotes inside sentences.
            quoting = csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE
            return pd.read_csv(
                self.path, sep=sep, header=header, encoding=self.encoding, quoting=quoting, dtype=str,
                keep_default_na=False,
            )
        if fmt == "jsonl":
            with open(self.path, encoding=self.encoding) as handle:
                return pd.DataFrame([json.loads(line) for line in handle if line.strip()])
        if fmt == "parquet":
            return pd.read_parquet(self.path)
        names = self.column_names or ["label", "text"]
        with open(self.path, encoding=self.encoding) as handle:
            rows = [line.rstrip("\n").split(maxsplit=1) for line in handle if line.strip()]
        return pd.DataFrame([(r[0], r[1] if len(r) > 1 else "") for r in rows], columns=names[:2])


class HFDatasetSource:
    """A Hugging Face dataset: a folder written by ``save_to_disk``, or a hub name (needs the internet)."""

    def __init__(self, name: str, split: str = "train", config_name: str | None = None) -> None:
        self.name = name
        self.split = split
        self.config_name = config_name

    def describe(self) -> str:
        return f"{self.name}[{self.split}]"

    def load(self) -> pd.DataFrame:
        import datasets

        if Path(self.name).expanduser().is_dir():
            loaded = datasets.load_from_disk(str(Path(self.name).expanduser()))
            if isinstance(loaded, datasets.DatasetDict):
                if self.split not in loaded:
                    raise DataError(f"Split '{self.split}' not in {self.name}; it has {list(loaded)}. Set `split`.")
                loaded = loaded[self.split]
            return loaded.to_pandas()
        try:
            return datasets.load_dataset(self.name, self.config_name, split=self.split).to_pandas()
        except Exception as err:  # network errors, unknown names: name the source and the offline alternative
            raise DataError(
                f"Could not load the Hugging Face dataset '{self.name}' (split '{self.split}'): {err}. Offline, "
                f"save it once with dataset.save_to_disk(folder) and give that folder as `name`."
            ) from err
