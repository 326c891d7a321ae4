"""Feature tables: the point-in-time join against a plain pandas merge_asof chain (and Feast's local
offline retrieval when it is installed), side by side in one run, then online lookups.

    python benchmarks/features.py                       # 1,000,000 events, 3 tables x 100,000 entities x 10 versions
    python benchmarks/features.py --events 200000 --entities 20000 --repeat 1

Join arms, on the same frames (tables already sorted by time, as the offline store keeps them):
  pandas   events sorted by time, then one `pd.merge_asof(..., by=entity)` per table (no ttl, rows in
           time order, nothing rejected): the floor a hand-written join starts from
  fabric   `point_in_time_join`: bad rows counted, ttl and defaults applied, rows in input order
  feast    `FeatureStore.get_historical_features` on a local file store, when feast is installed
Events include exact duplicates of (entity, time) pairs; every arm's row count is checked against
the input. Then: fabric's values against the pandas chain's (without ttl they must be identical),
and online lookups from the embedded SQLite store (p50/p99 for one entity, and for a batch), and an
in-process served prediction (lookup + ONNX Runtime) paced at 1,000 requests per second.

Prints a table and writes benchmarks/results/features.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from fabric.features import Feature, FeatureSet, FeatureTable  # noqa: E402
from fabric.features.offline import TableFrame, compute_table, point_in_time_join  # noqa: E402
from fabric.features.online import OnlineFeatures, SQLiteOnlineStore  # noqa: E402

KEY, TIME = "entity_id", "event_time"
START = np.datetime64("2026-01-01T00:00:00", "ns")
SPAN_NS = 90 * 24 * 3600 * 10**9


def make_data(events: int, entities: int, versions: int, tables: int, seed: int, duplicates: float, ttl: str | None):
    rng = np.random.default_rng(seed)
    ids = np.char.add("e", np.char.zfill(np.arange(entities).astype(str), 7)).astype(object)
    frames, definitions = [], []
    for t in range(tables):
        name = f"table_{t}"
        table_ids = np.repeat(ids, versions)
        stamps = START + rng.integers(0, SPAN_NS, len(table_ids)).astype("timedelta64[ns]")
        frame = pd.DataFrame(
            {KEY: table_ids, TIME: stamps, f"{name}_a": rng.normal(size=len(table_ids)), f"{name}_b": rng.integers(0, 100, len(table_ids)).astype(float)}
        ).sort_values(TIME, kind="stable", ignore_index=True)
        frames.append(frame)
        definitions.append(
            FeatureTable(name=name, key=KEY, event_time=TIME, ttl=ttl, features=(Feature(f"{name}_a"), Feature(f"{name}_b", "int")))
        )
    unique = int(events * (1 - duplicates))
    event_ids = ids[rng.integers(0, entities, unique)]
    event_times = START + rng.integers(0, SPAN_NS, unique).astype("timedelta64[ns]")
    copies = rng.integers(0, unique, events - unique)  # exact (entity, time) duplicates, labels may differ
    event_frame = pd.DataFrame(
        {
            KEY: np.concatenate([event_ids, event_ids[copies]]),
            TIME: np.concatenate([event_times, event_times[copies]]),
            "label": rng.integers(0, 2, events),
        }
    ).sample(frac=1.0, random_state=seed, ignore_index=True)  # arrival order, not time order
    return event_frame, frames, definitions


def pandas_chain(events: pd.DataFrame, frames: list[pd.DataFrame]) -> pd.DataFrame:
    left = events.sort_values(TIME, kind="stable")
    for frame in frames:  # already sorted by time
        left = pd.merge_asof(left, frame, on=TIME, by=KEY, direction="backward")
    return left


def timed(function, repeat: int) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def feast_arm(events: pd.DataFrame, frames: list[pd.DataFrame], repeat: int) -> dict[str, Any]:
    if importlib.util.find_spec("feast") is None:
        return {"status": "not installed"}
    import feast  # noqa: F401 - measured only where installed; not a dependency of the project
    from datetime import timedelta

    from feast import Entity, FeatureStore, FeatureView, Field, FileSource
    from feast.types import Float64

    with tempfile.TemporaryDirectory() as folder:
        repo = Path(folder)
        (repo / "feature_store.yaml").write_text(
            "project: bench\nprovider: local\nregistry: registry.db\nonline_store: {type: sqlite, path: online.db}\n"
            "offline_store: {type: file}\nentity_key_serialization_version: 2\n"
        )
        entity = Entity(name="entity", join_keys=[KEY])
        views = []
        for frame in frames:
            path = repo / f"{frame.columns[2]}.parquet"
            frame.to_parquet(path)
            source = FileSource(path=str(path), timestamp_field=TIME)
            name = frame.columns[2].rsplit("_", 1)[0]
            views.append(
                FeatureView(name=name, entities=[entity], ttl=timedelta(days=3650), source=source,
                            schema=[Field(name=c, dtype=Float64) for c in frame.columns[2:]])  # fmt: skip
            )
        store = FeatureStore(repo_path=str(repo))
        store.apply([entity, *views])
        refs = [f"{v.name}:{c}" for v, f in zip(views, frames, strict=True) for c in f.columns[2:]]
        seconds, out = timed(lambda: store.get_historical_features(entity_df=events, features=refs).to_df(), repeat)
        return {"status": "ok", "seconds": round(seconds, 3), "rows": len(out)}


def online_latency(definitions: list[FeatureTable], tables: list[TableFrame], lookups: int, seed: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as folder:
        store = SQLiteOnlineStore(Path(folder) / "online.db")
        start = time.perf_counter()
        for frame in tables:
            latest = frame.latest()
            store.write(frame.table, latest.keys, latest.times, latest.values, None)
        write_s = time.perf_counter() - start
        features = FeatureSet(entity=KEY, tables=tuple(definitions), on_unknown="default")
        online = OnlineFeatures(store, features)
        rng = np.random.default_rng(seed)
        keys = tables[0].keys
        ids = keys[rng.integers(0, len(keys), lookups)].tolist()
        at = int(START + np.timedelta64(SPAN_NS, "ns"))
        for entity in ids[:500]:
            online.lookup([entity], at)
        single = np.empty(lookups)
        for i, entity in enumerate(ids):
            t0 = time.perf_counter_ns()
            online.lookup([entity], at)
            single[i] = time.perf_counter_ns() - t0
        batch = np.empty(lookups // 100)
        for i in range(len(batch)):
            t0 = time.perf_counter_ns()
            online.lookup(ids[i * 100 : (i + 1) * 100], at)
            batch[i] = time.perf_counter_ns() - t0
        store.close()
    ms = single / 1e6
    return {
        "store": "sqlite (embedded)",
        "tables": len(tables),
        "entities": int(sum(len(t.latest()) for t in tables[:1])),
        "materialize_s": round(write_s, 3),
        "single_p50_ms": round(float(np.percentile(ms, 50)), 4),
        "single_p99_ms": round(float(np.percentile(ms, 99)), 4),
        "batch100_p50_ms": round(float(np.percentile(batch / 1e6, 50)), 4),
        "batch100_p99_ms": round(float(np.percentile(batch / 1e6, 99)), 4),
    }


def served_latency(seconds: float, rps: int, seed: int) -> dict[str, Any]:
    """The fraud-features example end to end in-process: complete the request record from the online
    store (card id -> card features), encode it, run the ONNX model. One request every 1/rps s
    (open loop); the latency excludes HTTP."""
    from fabric.data.dataset import prepare
    from fabric.families import FitData, get_family
    from fabric.features.store import FeatureStore
    from fabric.latency import session
    from fabric.spec import load_pipeline

    spec = load_pipeline(ROOT / "pipelines/fraud-features.yaml")
    spec = spec.model_copy(update={"data": spec.data.model_copy(update={"rows": 50_000})})
    with tempfile.TemporaryDirectory() as folder:
        store = FeatureStore(Path(folder))
        data = prepare(spec, feature_store=store)
        end = int(pd.Timestamp(data.test.frame[spec.data.time_column].min()).value)
        store.materialize(data.feature_set, spec.data, end=end)
        family = get_family("lightgbm")
        cat = [data.schema.names.index(c) for c in data.schema.categorical]
        fit = FitData(data.train.X, data.train.y, data.validation.X, data.validation.y, "binary", tuple(cat),
                      tuple(len(data.schema.features[c].categories) for c in cat), "roc_auc", seed)  # fmt: skip
        model = family.fit({"max_rounds": 200, "learning_rate": 0.1, "num_leaves": 31}, fit)
        sess = session(family.to_onnx(model, len(data.schema.names)))
        online = OnlineFeatures(store.online, data.feature_set)
        requests = data.test.frame.head(int(seconds * rps))
        own = [n for n in data.schema.names if n not in online.names]  # what the request itself carries
        bodies = [
            {"entity_id": card, **dict(zip(own, values, strict=True))}
            for card, values in zip(requests[spec.features.entity], requests[own].itertuples(index=False), strict=True)
        ]
        at = requests[spec.data.time_column].astype("int64").tolist()
        kinds = [(f.name, f.kind, {c: i for i, c in enumerate(f.categories)}) for f in data.schema.features]
        samples = np.empty(len(bodies))
        interval = 1.0 / rps
        next_at = time.perf_counter()
        for i, body in enumerate(bodies):
            while time.perf_counter() < next_at:
                pass
            t0 = time.perf_counter_ns()
            done = online.complete([body], at[i])
            record = done.records[0]
            x = np.empty((1, len(kinds)), dtype=np.float32)
            for j, (name, kind, index) in enumerate(kinds):  # per-row encoding, as the server does it
                value = record[name]
                x[0, j] = np.nan if value is None else (value if kind == "numeric" else index.get(str(value), -1.0))
            sess.run(None, {"input": x})
            samples[i] = time.perf_counter_ns() - t0
            next_at += interval
        store.online.close()
    ms = samples / 1e6
    return {
        "requests": len(samples),
        "rps": rps,
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
        "max_ms": round(float(ms.max()), 4),
        "note": "in-process: OnlineFeatures.complete + per-row encoding + ONNX Runtime; the HTTP server's own floor comes on top",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--entities", type=int, default=100_000)
    parser.add_argument("--versions", type=int, default=10)
    parser.add_argument("--tables", type=int, default=3)
    parser.add_argument("--duplicates", type=float, default=0.02, help="share of events that repeat an (entity, time) pair")
    parser.add_argument("--ttl", default="30d", help="ttl of every table in the fabric arm with ttl")
    parser.add_argument("--repeat", type=int, default=3, help="runs per arm; the best is reported")
    parser.add_argument("--lookups", type=int, default=20_000)
    parser.add_argument("--serve-seconds", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    events, frames, no_ttl = make_data(args.events, args.entities, args.versions, args.tables, args.seed, args.duplicates, None)
    with_ttl = [dataclasses.replace(d, ttl=args.ttl) for d in no_ttl]
    prep_s, tables = timed(lambda: [compute_table(d, f) for d, f in zip(no_ttl, frames, strict=True)], 1)
    ttl_tables = [TableFrame(d, t.keys, t.times, t.values) for d, t in zip(with_ttl, tables, strict=True)]

    pandas_s, chain = timed(lambda: pandas_chain(events, frames), args.repeat)
    fabric_s, joined = timed(lambda: point_in_time_join(events, KEY, TIME, tables), args.repeat)
    fabric_ttl_s, joined_ttl = timed(lambda: point_in_time_join(events, KEY, TIME, ttl_tables), args.repeat)
    feast = feast_arm(events, frames, 1)

    # the same values as the chain (without ttl): line the chain's rows up with the input's
    names = [n for d in no_ttl for n in d.names]
    chain_values = np.empty((len(chain), len(names)))
    chain_values[np.argsort(events[TIME].to_numpy(), kind="stable")] = chain[names].to_numpy(dtype=np.float64)
    ours = joined.frame[names].to_numpy(dtype=np.float64)
    identical = bool(np.array_equal(chain_values, ours, equal_nan=True))
    expired = float(np.isnan(joined_ttl.frame[names].to_numpy()).mean() - np.isnan(ours).mean())

    online = online_latency(no_ttl, tables, args.lookups, args.seed)
    served = served_latency(args.serve_seconds, 1000, args.seed)

    join = {
        "pandas_merge_asof_chain": {"seconds": round(pandas_s, 3), "rows": len(chain)},
        "fabric": {"seconds": round(fabric_s, 3), "rows": joined.rows, "rejected": joined.rejected.count},
        "fabric_with_ttl": {"seconds": round(fabric_ttl_s, 3), "rows": joined_ttl.rows, "ttl": args.ttl, "share_of_values_expired": round(expired, 4)},
        "feast_local": feast,
    }
    result = {
        "machine": {"platform": platform.platform(), "python": platform.python_version(), "pandas": pd.__version__, "numpy": np.__version__},
        "data": {"events": args.events, "duplicate_share": args.duplicates, "tables": args.tables, "entities": args.entities,
                 "versions": args.versions, "table_rows": len(frames[0])},  # fmt: skip
        "table_prep_s": round(prep_s, 3),
        "join": join,
        "ratio_fabric_to_pandas": round(fabric_s / pandas_s, 3),
        "ratio_fabric_ttl_to_pandas": round(fabric_ttl_s / pandas_s, 3),
        "rows_in": len(events),
        "no_row_lost": joined.rows == len(events) == joined_ttl.rows,
        "values_identical_to_pandas": identical,
        "online": online,
        "served": served,
    }

    print(f"point-in-time join: {args.events:,} events x {args.tables} tables of {args.entities:,} entities x {args.versions} versions")
    print(f"{'arm':<28}{'seconds':>10}{'rows':>12}")
    print(f"{'pandas merge_asof chain':<28}{pandas_s:>10.3f}{len(chain):>12,}")
    print(f"{'fabric':<28}{fabric_s:>10.3f}{joined.rows:>12,}   {fabric_s / pandas_s:.2f}x pandas")
    print(f"{'fabric, ttl ' + args.ttl:<28}{fabric_ttl_s:>10.3f}{joined_ttl.rows:>12,}   {fabric_ttl_s / pandas_s:.2f}x pandas")
    if feast["status"] == "ok":
        print(f"{'feast local offline':<28}{feast['seconds']:>10.3f}{feast['rows']:>12,}   {feast['seconds'] / fabric_s:.1f}x fabric")
    else:
        print(f"{'feast local offline':<28}{'not installed':>22}")
    print(f"rows in {len(events):,}; no row lost: {result['no_row_lost']}; values identical to pandas: {identical}; table prep (once) {prep_s:.2f} s")
    print(f"online lookup ({online['store']}, {online['tables']} tables): one entity p50 {online['single_p50_ms']:.4f} ms, "
          f"p99 {online['single_p99_ms']:.4f} ms; 100 entities p50 {online['batch100_p50_ms']:.3f} ms, p99 {online['batch100_p99_ms']:.3f} ms")  # fmt: skip
    print(f"served prediction with lookup at {served['rps']} rps ({served['requests']} requests, in-process): "
          f"p50 {served['p50_ms']:.4f} ms, p99 {served['p99_ms']:.4f} ms")  # fmt: skip
    out = ROOT / "benchmarks" / "results" / "features.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(f"wrote {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
