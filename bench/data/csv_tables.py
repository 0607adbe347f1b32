"""Label tables (CSV, or Dataverse's tab-separated .tab) read for the CSV-based formats
(bench.data.chexpert, bench.data.ham10000), with one-line errors that name the file, the
row as the file numbers it, and the column.

It is its own module because the formats share it: how a table is sniffed, read and
checked cell by cell is the same whichever dataset it describes, and a format module
should hold only what its dataset means.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.data.common import data_error
from bench.inputs import damage, plural


def read_csv(path: Path, expected: str, obtain: str):
    """The table as a pandas DataFrame: comma-separated, tab-separated (.tab, .tsv), or
    sniffed without an extension; a missing, damaged or unparsable file is a data_error."""
    import pandas as pd

    if not path.is_file():
        raise data_error(path, "file not found", expected, obtain)
    problem = damage(path)
    if problem:
        raise data_error(path, problem, expected, obtain)
    suffix = path.suffix.lower()  # Dataverse serves tables as tab-separated .tab
    sep = "\t" if suffix in (".tab", ".tsv") else "," if suffix else None
    try:
        if sep is None:  # no extension: let the python engine sniff the separator
            return pd.read_csv(path, sep=None, engine="python")
        return pd.read_csv(path, sep=sep, low_memory=False)
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        problem = " ".join(str(exc).split())[:200]
        raise data_error(path, f"not a readable CSV ({problem})", expected, obtain) from None


def csv_rows(df) -> np.ndarray:
    """Each data row's number as in the file: the header is row 1, the first data row 2
    (pandas' index, which survives filtering, counts data rows from 0)."""
    return np.asarray(df.index, dtype=np.int64) + 2


def found_columns(df, show: int = 12) -> str:
    """The CSV's columns for an error message: the first few, and how many in all."""
    cols = [str(c) for c in df.columns]
    more = f", ... ({len(cols)} columns)" if len(cols) > show else ""
    return ", ".join(map(repr, cols[:show])) + more if cols else "none"


def numeric_column(csv: Path, col, name: str, rows: np.ndarray, expected: str,
                   obtain: str) -> np.ndarray:
    """A label column as floats, blanks NaN; a non-numeric cell names its row and value."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(col):  # pandas parsed every cell as a number
        return col.to_numpy(np.float64)
    text = col.astype(str).str.strip()
    blank = col.isna().to_numpy() | (text == "").to_numpy()
    values = pd.to_numeric(text.where(~blank, "nan"), errors="coerce").to_numpy(np.float64)
    bad = np.isnan(values) & ~blank
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise data_error(csv, f"row {rows[i]}: column {name!r} holds {text.iloc[i]!r}, not a "
                         f"number ({plural(int(bad.sum()), 'such cell')})", expected, obtain)
    return values
