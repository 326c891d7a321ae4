"""Reading a spec's data source into a DataFrame: the embedded generator, scikit-learn's bundled
sets, CSV or Parquet files. Nothing is ever downloaded."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from fabric.errors import DataError
from fabric.spec import DataSpec

BUILTINS = ("fraud", "fraud-cards")
# scikit-learn sets that ship inside the package (no fetch_* loaders: those download)
SKLEARN_BUNDLED = ("diabetes", "breast_cancer", "wine", "iris")


def load_frame(data: DataSpec) -> pd.DataFrame:
    kind, _, name = data.source.partition(":")
    if kind == "builtin":
        return _builtin(data, name)
    if kind == "sklearn":
        return _sklearn(name)
    return _file(Path(data.source))


def _builtin(data: DataSpec, name: str) -> pd.DataFrame:
    if name not in BUILTINS:
        raise DataError(f"data.source=builtin:{name} is unknown; use one of {[f'builtin:{b}' for b in BUILTINS]}")
    if name == "fraud-cards":
        from fabric.data.cards import generate_card_fraud

        return generate_card_fraud(rows=data.rows or 100_000, seed=data.seed, drift=data.drift)
    from fabric.data.synthetic import generate_fraud

    return generate_fraud(rows=data.rows or 100_000, seed=data.seed, drift=data.drift)


def _sklearn(name: str) -> pd.DataFrame:
    if name not in SKLEARN_BUNDLED:
        raise DataError(
            f"data.source=sklearn:{name} is not bundled with scikit-learn; use one of "
            f"{[f'sklearn:{s}' for s in SKLEARN_BUNDLED]}"
        )
    from sklearn import datasets

    bunch = getattr(datasets, f"load_{name}")(as_frame=True)
    return bunch.frame


def _file(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise DataError(f"data.source={path}: no such file; fix the path (relative paths start at the spec's folder)")
    if path.stat().st_size == 0:
        raise DataError(f"data.source={path}: the file is empty; point data.source at a file with a header and rows")
    suffix = path.suffix.lower()
    try:
        if suffix == ".csv":
            frame = pd.read_csv(path)
        elif suffix in (".parquet", ".pq"):
            frame = pd.read_parquet(path)
        else:
            raise DataError(f"data.source={path}: unsupported file type {suffix!r}; use .csv or .parquet")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"data.source={path}: cannot be read ({exc}); check the file's format") from None
    if frame.empty:
        raise DataError(f"data.source={path}: has no rows; point data.source at a file with data")
    return frame
