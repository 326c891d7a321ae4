"""A loaded model version: its ONNX Runtime session and the request decoding its schema allows.

Decoding is plain Python over the request's rows (no pandas, no pydantic per request): single-row
requests are the common case, and their validation must cost microseconds, not the model's time.
"""

from __future__ import annotations

import csv
import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from fabric.data.schema import UNSEEN, FeatureSchema
from fabric.serving.batching import MicroBatcher, scores_rows_alone

FLOAT32_MAX = float(np.finfo(np.float32).max)


class BadRequest(Exception):
    """The client's input is wrong: answered with `status` and a message naming the field."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class LoadedModel:
    version: str  # registry address, e.g. fraud:3
    schema: FeatureSchema
    session: Any
    path: Path

    features: Any = None  # fabric.features.online.OnlineFeatures when the model was trained on feature tables
    batcher: MicroBatcher = field(init=False, repr=False)  # how requests reach `predict` (see batching.py)

    def __post_init__(self) -> None:
        self.batcher = MicroBatcher(self.predict)

    @classmethod
    def load(cls, path: Path, version: str, stack: str | None = None) -> LoadedModel:
        from fabric.latency import session

        schema_file, model_file = path / "schema.json", path / "model.onnx"
        for needed in (schema_file, model_file):
            if not needed.is_file():
                raise FileNotFoundError(f"{needed} is missing; a model folder holds model.onnx and schema.json")
        schema = FeatureSchema.from_dict(json.loads(schema_file.read_text()))
        model = cls(version, schema, session(model_file.read_bytes()), path)
        model._index = {f.name: {c: i for i, c in enumerate(f.categories)} for f in schema.features if f.kind == "categorical"}
        model._kinds = [(f.name, f.kind, f.nullable) for f in schema.features]
        model._names = set(schema.names)
        if (path / "features.json").is_file():  # entity ids are completed from the online store
            model.features = _online_features(path, stack)
        model.predict(np.zeros((1, len(schema.features)), dtype=np.float32))  # first run allocates
        model.batcher.joint = scores_rows_alone(model.predict, model._probe())
        return model

    def _probe(self, rows: int = 8) -> np.ndarray:
        """Rows the model can score: spread numeric values and valid category codes, seeded."""
        X = np.random.default_rng(0).normal(0.0, 3.0, size=(rows, len(self._kinds))).astype(np.float32)
        for j, f in enumerate(self.schema.features):
            if f.kind == "categorical":
                X[:, j] = np.arange(rows) % max(len(f.categories), 1)
        return X

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input": X})[0].reshape(-1)

    # -- decoding ---------------------------------------------------------------------------
    def decode(self, body: bytes, content_type: str) -> tuple[np.ndarray, list[dict[str, Any]], list[dict[str, Any] | None] | None]:
        """The request as float32 [N, F], the raw records (for capture) and, for a model on feature
        tables, what the online store answered for each record (for the skew check), else None."""
        kind = content_type.split(";", 1)[0].strip().lower()
        if kind == "application/json":
            records = self._json_records(body)
        elif kind == "text/csv":
            records = self._csv_records(body)
        else:
            raise BadRequest(
                f"Content-Type {content_type or '(none)'} is not supported; send application/json or text/csv", 415
            )
        if not records:
            raise BadRequest("the request has no rows; send at least one record")
        lookups = None
        if self.features is not None:
            done = self.features.complete(records)
            if done.missing:
                raise BadRequest(f"unknown entity id(s) {done.missing[:5]}: the online store has no features for them", 404)
            records, lookups = done.records, done.lookups
        X = np.empty((len(records), len(self._kinds)), dtype=np.float32)
        for i, record in enumerate(records):
            self._encode_row(i, record, X[i])
        return X, records, lookups

    def _json_records(self, body: bytes) -> list[dict[str, Any]]:
        try:
            payload = orjson.loads(body)  # 1.2 us for a 12-feature record; the standard library takes 6.5
        except orjson.JSONDecodeError:  # NaN, integers past 64 bits: the standard library reads them, or says why not
            payload = _loads_slowly(body)
        if isinstance(payload, dict) and "rows" in payload:
            rows = payload["rows"]
            if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
                raise BadRequest("rows must be a list of lists in schema order: " + ", ".join(self.schema.names))
            names = self.schema.names
            for i, row in enumerate(rows):
                if len(row) != len(names):
                    raise BadRequest(f"rows[{i}] has {len(row)} values; the model takes {len(names)}: {', '.join(names)}")
            return [dict(zip(names, row, strict=True)) for row in rows]
        records = payload.get("records", payload.get("instances")) if isinstance(payload, dict) else payload
        if isinstance(records, dict):
            records = [records]
        if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
            raise BadRequest('send {"records": [{feature: value, ...}]} or {"rows": [[...]]}')
        return records

    def _csv_records(self, body: bytes) -> list[dict[str, Any]]:
        try:
            reader = csv.DictReader(io.StringIO(body.decode("utf-8")))
            records = [dict(r) for r in reader]
        except (UnicodeDecodeError, csv.Error) as exc:
            raise BadRequest(f"the CSV body cannot be read ({exc}); send a header row and UTF-8 text") from None
        for i, record in enumerate(records):
            if None in record:
                raise BadRequest(f"CSV row {i + 1} has more values than the header")
            for name, kind, _ in self._kinds:
                value = record.get(name)
                if kind == "numeric" and value is not None:
                    record[name] = None if value == "" else _csv_number(name, i, value)
        return records

    def _encode_row(self, i: int, record: dict[str, Any], out: np.ndarray) -> None:
        if len(record) != len(self._kinds) or not self._names.issuperset(record):
            missing = [n for n, _, _ in self._kinds if n not in record]
            extra = sorted(set(record) - self._names)
            if missing:
                raise BadRequest(f"records[{i}] misses feature {missing[0]!r}" + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""), 422)
            raise BadRequest(f"records[{i}] has unknown feature {extra[0]!r}; the model takes: {', '.join(self.schema.names)}", 422)
        for j, (name, kind, nullable) in enumerate(self._kinds):
            value = record[name]
            # fast paths for the common, valid values; everything else takes the checks below
            kind_of_value = type(value)
            if kind == "numeric" and (kind_of_value is float or kind_of_value is int) and -FLOAT32_MAX <= value <= FLOAT32_MAX:
                out[j] = value  # NaN and infinities fail the range test and are handled below
                continue
            if kind_of_value is str and kind == "categorical":
                out[j] = self._index[name].get(value, UNSEEN)
                continue
            if value is None:
                if not nullable:
                    raise BadRequest(f"records[{i}].{name} is null; this feature needs a value", 422)
                out[j] = np.nan
            elif kind == "numeric":
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise BadRequest(f"records[{i}].{name}={value!r} must be a number", 422)
                if isinstance(value, int) and abs(value) > FLOAT32_MAX:  # before isfinite, which overflows on it
                    raise BadRequest(f"records[{i}].{name} is an integer beyond float32's range (±{FLOAT32_MAX:.3g}); send a smaller number", 422)
                if not math.isfinite(value):
                    if not nullable:
                        raise BadRequest(f"records[{i}].{name} is not a finite number; send a number", 422)
                    value = math.nan
                elif abs(value) > FLOAT32_MAX:
                    raise BadRequest(f"records[{i}].{name}={value:g} is beyond float32's range (±{FLOAT32_MAX:.3g}); send a smaller number", 422)
                out[j] = value
            else:
                if not isinstance(value, str | int) or isinstance(value, bool):
                    raise BadRequest(f"records[{i}].{name}={value!r} must be a string category", 422)
                out[j] = self._index[name].get(str(value), UNSEEN)


def _loads_slowly(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequest(f"the body is not valid JSON ({exc})") from None
    except RecursionError:
        raise BadRequest("the JSON body is nested too deeply; send a flat list of records") from None


def _csv_number(name: str, row: int, text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise BadRequest(f"CSV row {row + 1}: {name}={text!r} must be a number", 422) from None


def _online_features(path: Path, stack: str | None) -> Any:
    """The online store named by FABRIC_FEATURES_ONLINE_URL, else the stack's embedded one."""
    import os

    from fabric.features.online import OnlineFeatures, open_online_store
    from fabric.features.store import ONLINE_URL_ENV, features_home
    from fabric.registry import fabric_home

    stack = stack or os.environ.get("FABRIC_STACK", "dev")
    url = os.environ.get(ONLINE_URL_ENV) or f"sqlite:///{features_home(fabric_home() / stack) / 'online.db'}"
    return OnlineFeatures.from_model(path, open_online_store(url))
