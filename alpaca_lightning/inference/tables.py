"""Tables in and out of ``alpaca-predict``, a chunk at a time: CSV, TSV, JSONL and parquet.

Reading yields DataFrames of at most ``chunk_size`` rows, so memory is bounded by the chunk, not the file. Text
columns are read as strings, as the training sources read them (``data/sources.py``). Writing appends chunks to a
file of the output's format; a file whose content is not the format its name says is an error that names both.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import numpy as np
import pandas as pd

from alpaca_lightning.data.sources import delimited_options, format_from_name, json_objects
from alpaca_lightning.errors import DataError

def table_format(path: Path) -> str:
    """The format a file's name says, as the training sources read it (.json is read as JSON lines)."""
    fmt = format_from_name(path)
    if fmt is None:
        raise DataError(f"Cannot tell the format of {path} from its name: use a file ending in .csv, .tsv, .jsonl "
                        f"or .parquet (CSV and TSV may be compressed, e.g. .csv.gz).")
    return fmt


def read_chunks(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    """The rows of ``path`` in order, ``chunk_size`` at a time."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Input file not found: {path}.")
    fmt = table_format(path)
    reader = {"csv": _delimited, "tsv": _delimited, "jsonl": _jsonl, "parquet": _parquet}[fmt]
    yield from reader(path, chunk_size, fmt)


def _delimited(path: Path, chunk_size: int, fmt: str) -> Iterator[pd.DataFrame]:
    try:
        with pd.read_csv(path, chunksize=chunk_size, encoding="utf-8-sig", **delimited_options(fmt)) as chunks:
            yield from chunks
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{path} is not a well-formed UTF-8 {fmt.upper()} file ({err}). Fix it, or give the file the "
                        f"suffix of its real format.") from None


def _jsonl(path: Path, chunk_size: int, fmt: str) -> Iterator[pd.DataFrame]:
    from pandas.io.common import get_handle

    records: list[dict] = []
    with get_handle(path, "r", compression="infer", encoding="utf-8-sig") as handles:
        for _, record in json_objects(handles.handle, str(path)):
            records.append(record)
            if len(records) == chunk_size:
                yield pd.DataFrame.from_records(records)
                records = []
    if records:
        yield pd.DataFrame.from_records(records)


def _parquet(path: Path, chunk_size: int, fmt: str) -> Iterator[pd.DataFrame]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        handle = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as err:
        raise DataError(f"{path} is not a parquet file ({err}). Give the file the suffix of its real format "
                        f"(.csv, .tsv, .jsonl).") from None
    for batch in handle.iter_batches(batch_size=chunk_size):
        yield batch.to_pandas()


def holds_lists(column: pd.Series) -> bool:
    return column.dtype == object and len(column) > 0 and isinstance(column.iloc[0], (list, np.ndarray))


def json_list(value: object) -> object:
    """A list cell as JSON text (CSV and TSV have no lists)."""
    return json.dumps(value.tolist() if isinstance(value, np.ndarray) else value) if isinstance(
        value, (list, np.ndarray)) else value


class ChunkWriter:
    """Appends DataFrames to one open file in ``fmt``; the header (CSV/TSV, unless ``header`` is false: a file that
    continues another) or schema (parquet) comes from the first chunk."""

    def __init__(self, handle: IO[bytes], fmt: str, header: bool = True) -> None:
        self.handle = handle
        self.fmt = fmt
        self._parquet = None
        self._header = header  # CSV/TSV: whether the next chunk starts with the header row

    def write(self, frame: pd.DataFrame) -> None:
        if self.fmt == "parquet":
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self._parquet is None:
                self._parquet = pq.ParquetWriter(self.handle, table.schema)
            self._parquet.write_table(table.cast(self._parquet.schema))
        elif self.fmt == "jsonl":
            text = frame.to_json(orient="records", lines=True, force_ascii=False)
            self.handle.write(text.encode() if text.endswith("\n") or not text else (text + "\n").encode())
        else:
            sep = "," if self.fmt == "csv" else "\t"
            frame = frame.assign(**{c: frame[c].map(json_list) for c in frame.columns if holds_lists(frame[c])})
            self.handle.write(frame.to_csv(index=False, header=self._header, sep=sep).encode())
        self._header = False

    def close(self) -> None:
        if self._parquet is not None:
            self._parquet.close()
