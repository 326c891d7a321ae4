"""Micro-batching: requests decoded in the same event-loop turn are scored in one ONNX Runtime call.

Under concurrent load a server on one core spends more on per-call overhead than on the rows
(a 200-tree ensemble: 17 us for one row, 79 us for 32 rows in one call). A request that finds no
batch open opens one and schedules its flush for the next loop turn (`call_soon`); requests that the
loop runs before then join it. No timer waits for more requests, so a lone request pays one loop
turn, not a window. When a joint call fails, each request is scored alone, so a request that breaks
the model fails only itself.

Only a graph that scores each row as it would alone is batched. A dynamically quantized INT8 graph
does not: DynamicQuantizeLinear picks one activation scale per call, so a row's score would depend on
the rows it shared the call with (by 0.003 on benchmarks/serve.py's INT8 MLP). `scores_rows_alone`
checks this on a probe when a model loads; a graph that fails it gets one call per request.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import numpy as np


def scores_rows_alone(predict: Callable[[np.ndarray], np.ndarray], probe: np.ndarray, tolerance: float = 1e-5) -> bool:
    """Whether `predict` gives each row of `probe` (float32 [N, F], N > 1) the score it gives that row
    alone. A graph that fails on several rows at once does not."""
    try:
        together = predict(probe)
    except Exception:  # noqa: BLE001 - e.g. a graph whose shapes allow one row only
        return False
    alone = np.concatenate([predict(probe[i : i + 1]) for i in range(len(probe))])
    return together.shape == alone.shape and bool(np.allclose(together, alone, rtol=0, atol=tolerance))


class MicroBatcher:
    def __init__(self, predict: Callable[[np.ndarray], np.ndarray], joint: bool = True) -> None:
        self._predict = predict
        self.joint = joint  # False: every request gets its own call, scored at once
        self._pending: list[tuple[np.ndarray, asyncio.Future]] = []
        self.calls = 0  # model calls made, and rows they scored: their ratio is the mean batch size
        self.requests = 0

    def score(self, X: np.ndarray) -> asyncio.Future:
        """A future for X's scores (a 1-D array, one per row), resolved on the next loop turn."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        if not self.joint:
            self.requests += 1
            self._score_each([(X, future)])
            return future  # already done: awaiting it does not wait for a loop turn
        self._pending.append((X, future))
        if len(self._pending) == 1:
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        self.requests += len(batch)
        if len(batch) == 1:
            self._score_each(batch)
            return
        try:
            scores = self._predict(np.concatenate([X for X, _ in batch]))
        except Exception:  # noqa: BLE001 - find the request that breaks the model; the others still get answers
            self._score_each(batch)
            return
        self.calls += 1
        start = 0
        for X, future in batch:
            end = start + len(X)
            if not future.cancelled():
                future.set_result(scores[start:end])
            start = end

    def _score_each(self, batch: list[tuple[np.ndarray, asyncio.Future]]) -> None:
        for X, future in batch:
            self.calls += 1
            try:
                scores = self._predict(X)
            except Exception as exc:  # noqa: BLE001 - handed to the request, which answers 500
                if not future.cancelled():
                    future.set_exception(exc)
                continue
            if not future.cancelled():
                future.set_result(scores)
