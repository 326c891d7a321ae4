"""Latency of a model as it will be served: ONNX Runtime in-process, one thread, single rows.

The search calls this for every candidate, so it is cheap (a few hundred runs); the final profile
that goes into the registry uses more runs and adds a batch measurement.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class LatencyProfile:
    p50_ms: float
    p95_ms: float
    p99_ms: float
    max_ms: float
    runs: int
    batch_rows: int | None = None
    batch_p50_ms: float | None = None
    batch_p99_ms: float | None = None

    def to_dict(self) -> dict[str, float | int | None]:
        return asdict(self)


def session(onnx_bytes: bytes):  # noqa: ANN201 - onnxruntime.InferenceSession, imported lazily
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    return ort.InferenceSession(onnx_bytes, options, providers=["CPUExecutionProvider"])


def _percentiles(samples_ns: np.ndarray) -> tuple[float, float, float, float]:
    ms = samples_ns / 1e6
    p50, p95, p99 = np.percentile(ms, [50, 95, 99])
    return float(p50), float(p95), float(p99), float(ms.max())


def measure(onnx_bytes: bytes, rows: np.ndarray, runs: int = 300, warmup: int = 30, batch_rows: int | None = None) -> LatencyProfile:
    """Time `runs` single-row calls on rows drawn in turn from `rows` (float32 [N, F])."""
    sess = session(onnx_bytes)
    rows = np.ascontiguousarray(rows, dtype=np.float32)
    singles = [rows[i : i + 1] for i in range(min(len(rows), 256))]
    run = sess.run
    for i in range(warmup):
        run(None, {"input": singles[i % len(singles)]})
    samples = np.empty(runs, dtype=np.int64)
    clock = time.perf_counter_ns
    for i in range(runs):
        feed = {"input": singles[i % len(singles)]}
        start = clock()
        run(None, feed)
        samples[i] = clock() - start
    p50, p95, p99, worst = _percentiles(samples)
    batch = {}
    if batch_rows:
        block = np.ascontiguousarray(np.resize(rows, (batch_rows, rows.shape[1])), dtype=np.float32)
        run(None, {"input": block})
        timings = np.empty(30, dtype=np.int64)
        for i in range(len(timings)):
            start = clock()
            run(None, {"input": block})
            timings[i] = clock() - start
        b50, _, b99, _ = _percentiles(timings)
        batch = {"batch_rows": batch_rows, "batch_p50_ms": round(b50, 4), "batch_p99_ms": round(b99, 4)}
    return LatencyProfile(round(p50, 4), round(p95, 4), round(p99, 4), round(worst, 4), runs, **batch)


def predict(onnx_bytes: bytes, X: np.ndarray) -> np.ndarray:
    sess = session(onnx_bytes)
    return sess.run(["score"], {"input": np.ascontiguousarray(X, dtype=np.float32)})[0].reshape(-1).astype(np.float64)
