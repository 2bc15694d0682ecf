"""Readers that turn a local file or a Hugging Face dataset into a pandas DataFrame.

Every source is a small class with ``load() -> DataFrame`` and a ``describe()`` used in error messages; task
configs instantiate them through ``_target_``.
"""

from __future__ import annotations

import codecs
import csv
import io
import json
import warnings
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import pandas as pd
from pandas.io.common import get_handle

from alpaca_lightning.errors import DataError

_COMPRESSION_SUFFIXES = {".bz2", ".gz", ".xz", ".zip", ".zst"}
_FORMAT_BY_SUFFIX = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}
FILE_FORMATS = ("csv", "tsv", "jsonl", "parquet", "label_text_lines")


def format_from_name(path: Path) -> str | None:
    """The table format a file's suffix names (a compression suffix after it is skipped), or None."""
    suffixes = [s.lower() for s in Path(path).suffixes if s.lower() not in _COMPRESSION_SUFFIXES]
    return _FORMAT_BY_SUFFIX.get(suffixes[-1] if suffixes else "")


def delimited_options(fmt: str) -> dict:
    """How CSV and TSV files are parsed: every value a string, nothing read as missing. TSV is read with
    QUOTE_NONE: GLUE-style files contain unbalanced quotes inside sentences."""
    return dict(sep="," if fmt == "csv" else "\t", quoting=csv.QUOTE_MINIMAL if fmt == "csv" else csv.QUOTE_NONE,
                dtype=str, keep_default_na=False, index_col=False)


class FileSource:
    """A local CSV, TSV, JSONL or parquet file, or lines of ``<label> <text>`` (format ``label_text_lines``).

    ``header: false`` reads a file without a header row; ``column_names`` then names its columns. ``skip_rows``
    drops lines of a CSV/TSV file by number (0 = the first line) before the header is read, e.g. ``[1, 2]`` for
    Orange's ``.tab`` files, whose second and third lines hold column types and flags.
    """

    def __init__(
        self,
        path: str,
        format: str = "auto",
        encoding: str = "utf-8",
        header: bool = True,
        column_names: list[str] | None = None,
        skip_rows: list[int] | None = None,
    ) -> None:
        self.path = Path(path).expanduser()
        self.format = format
        self.encoding = encoding
        self.header = header
        self.column_names = list(column_names) if column_names is not None else None
        self.skip_rows = skip_rows  # checked when loading, so that a bad value surfaces as a DataError

    def describe(self) -> str:
        return str(self.path)

    def _lines_to_skip(self, fmt: str) -> list[int]:
        """``skip_rows`` as a sorted list; a bare number, a negative or a non-integer is refused here rather than
        handed to pandas (which reads a bare int as a count of leading lines)."""
        if self.skip_rows is None:
            return []
        given = self.skip_rows
        rows = list(given) if isinstance(given, Sequence) and not isinstance(given, str) else None
        if rows is None or not all(isinstance(r, int) and not isinstance(r, bool) and r >= 0 for r in rows):
            raise DataError(
                f"skip_rows of the source {self.path} must be a list of line numbers (0 = the first line), e.g. "
                f"[1, 2]; got {given!r}."
            )
        if rows and fmt not in ("csv", "tsv"):
            raise DataError(
                f"skip_rows applies to CSV and TSV files only, but {self.path} is read as {fmt}. Remove skip_rows, "
                f"or set the source's `format` to csv or tsv."
            )
        return sorted(set(rows))

    def load(self) -> pd.DataFrame:
        if not self.path.is_file():
            raise DataError(
                f"Data file not found: {self.path}. Check the task's source path, or the data root "
                f"(paths.data_dir, or the ALPACA_DATA_DIR environment variable)."
            )
        if self.path.stat().st_size == 0:
            raise DataError(f"{self.path} is empty (0 bytes). Point the task's source at the file with the data.")
        fmt = self._resolve_format()
        skip = self._lines_to_skip(fmt)
        if fmt == "parquet":
            frame = pd.read_parquet(self.path)
        else:
            frame = self._read_text_format(fmt, self._read_text(), skip)
        if self.column_names is not None and fmt != "label_text_lines":
            if len(self.column_names) != frame.shape[1]:
                raise DataError(
                    f"{self.path} has {frame.shape[1]} columns but column_names lists {len(self.column_names)}: "
                    f"{self.column_names}. Give one name per column."
                )
            frame.columns = self.column_names
        return frame

    def _read_text(self) -> str:
        """The whole file decoded, with a UTF-8 byte-order mark dropped and CRLF line ends made LF."""
        # pandas' own opener, so that compressed files (.csv.bz2, .jsonl.gz, ...) read as before
        with get_handle(self.path, "rb", compression="infer", is_text=False) as handles:
            raw = handles.handle.read()
        try:
            codec = codecs.lookup(self.encoding).name
        except LookupError:
            raise DataError(
                f"Unknown encoding '{self.encoding}' for {self.path}. Set the source's `encoding` to a Python codec "
                f"name, e.g. utf-8, latin-1 or cp1252."
            ) from None
        encoding = "utf-8-sig" if codec == "utf-8" else self.encoding
        try:
            text = raw.decode(encoding)
        except UnicodeDecodeError as err:
            line = raw.count(b"\n", 0, err.start) + 1
            raise DataError(
                f"{self.path} is not valid {self.encoding}: {err.reason} at byte {err.start} (line {line}). "
                f"Set the source's `encoding` (for example latin-1)."
            ) from None
        nul = text.find("\x00")
        if nul >= 0:
            # NUL bytes mean a binary, UTF-16 or corrupted file; pandas would silently keep them inside texts.
            line = text.count("\n", 0, nul) + 1
            raise DataError(
                f"{self.path} contains a NUL byte (line {line}): it is binary, "
                f"corrupted, or in another encoding (UTF-16?). Fix the file, or set the source's `encoding`."
            )
        return text.replace("\r\n", "\n")

    def _resolve_format(self) -> str:
        if self.format != "auto":
            if self.format not in FILE_FORMATS:
                raise DataError(f"Unknown file format '{self.format}' for {self.path}. Use one of {FILE_FORMATS}.")
            return self.format
        fmt = format_from_name(self.path)
        if fmt is None:
            raise DataError(f"Cannot tell the format of {self.path} from its name. Set the source's `format`.")
        return fmt

    def _read_text_format(self, fmt: str, text: str, skip: list[int]) -> pd.DataFrame:
        if fmt in ("csv", "tsv"):
            return self._read_delimited(fmt, text, skip)
        if fmt == "jsonl":
            return pd.DataFrame(self._json_records(text))
        names = self.column_names or ["label", "text"]
        rows = [line.split(maxsplit=1) for line in text.split("\n") if line.strip()]
        return pd.DataFrame([(r[0], r[1] if len(r) > 1 else "") for r in rows], columns=names[:2])

    def _read_delimited(self, fmt: str, text: str, skip: list[int]) -> pd.DataFrame:
        try:
            with warnings.catch_warnings():
                # A first row longer than the header makes pandas drop fields with only a warning.
                warnings.simplefilter("error", pd.errors.ParserWarning)
                return pd.read_csv(io.StringIO(text), header=0 if self.header else None, skiprows=skip or None,
                                   **delimited_options(fmt))
        except (pd.errors.ParserError, pd.errors.ParserWarning) as err:
            raise DataError(
                f"{self.path} is not a well-formed {fmt.upper()} file: {err}. Check the row it names (a quote "
                f"never closed, or more fields than the header), or set the source's `format`."
            ) from None
        except pd.errors.EmptyDataError:
            raise DataError(f"{self.path} holds no columns (only blank lines?). Fix the file.") from None

    def _json_records(self, text: str) -> list[dict]:
        return [record for _, record in json_objects(text.split("\n"), str(self.path))]


def json_objects(lines: Iterable[str], where: str, example: str = '{"text": "...", "label": "..."}',
                 ) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSONL file; a line that is not a JSON object is an error
    that names the file and the line (every JSONL reader goes through here)."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataError(f"{where} line {number} is not valid JSON ({err.msg}). Fix that line.") from None
        if not isinstance(record, dict):
            raise DataError(f"{where} line {number} is a JSON {type(record).__name__}, not an object: JSONL needs one "
                            f"object per line, e.g. {example}.")
        yield number, record


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
