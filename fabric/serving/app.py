"""The model server: one plain ASGI callable (no framework on the hot path; see benchmarks/serve.py).

Contract shared by every backend (SageMaker's container contract plus metrics):
  GET  /ping         200 when a champion is loaded
  POST /invocations  JSON {"records": [{feature: value}]}, {"rows": [[...]]}, a list of records, or
                     CSV with a header; answers {"predictions": [...], "model": "fraud:3", "request_id"}
  GET  /metrics      Prometheus text: requests, errors, rows, latency histogram per version and slot
Admin routes (`/admin/...`, loopback clients only) load a version into a slot and shift traffic.

Slots: `champion` answers; `canary` answers a percentage of requests; `shadow` scores a copy of
champion traffic after the answer is computed (its output is compared, never returned); `standby`
keeps the previous champion loaded for an instant blue/green switch back.
A swap replaces a slot's reference between two requests on the event loop: a request that already
holds the old model finishes on it, and loading happens in a thread so traffic never waits for it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from fabric.serving.capture import Capture
from fabric.serving.metrics import Metrics
from fabric.serving.model import BadRequest, LoadedModel

SLOTS = ("champion", "canary", "shadow", "standby")
LOOPBACK = {"127.0.0.1", "::1", "localhost"}
JSON_HEADERS = [(b"content-type", b"application/json")]


class ModelServer:
    def __init__(self, capture: Capture | None = None, max_body_bytes: int = 1_048_576) -> None:
        self.slots: dict[str, LoadedModel | None] = dict.fromkeys(SLOTS)
        self.canary_percent = 0
        self.metrics = Metrics()
        self.capture = capture
        self.max_body_bytes = max_body_bytes
        self._counter = 0
        # generated request ids: a random per-process prefix and a counter (uuid4 cost 5-7 us a request)
        self._id_prefix, self._ids = os.urandom(8).hex(), itertools.count(1)
        self._flusher: asyncio.Task | None = None

    # -- ASGI ---------------------------------------------------------------------------------
    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path, method = scope["path"], scope["method"]
        try:
            if path == "/invocations" and method == "POST":
                await self._invocations(scope, receive, send)
            elif path == "/ping" and method == "GET":
                ok = self.slots["champion"] is not None
                body = {"status": "healthy" if ok else "no model", "model": self._version("champion")}
                await _respond(send, 200 if ok else 503, body)
            elif path == "/metrics" and method == "GET":
                await _respond_text(send, 200, self.metrics.render(self._model_calls()), b"text/plain; version=0.0.4")
            elif path.startswith("/admin/"):
                await self._admin(scope, receive, send)
            else:
                await _respond(send, 404 if method in ("GET", "POST") else 405, {"error": f"no route {method} {path}"})
        except BadRequest as exc:
            self.metrics.bad_requests += 1
            await _respond(send, exc.status, {"error": str(exc)})

    async def _lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self._flusher = asyncio.create_task(self._flush_every(1.0))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self._flusher:
                    self._flusher.cancel()
                if self.capture:
                    self.capture.flush()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _flush_every(self, seconds: float) -> None:
        while True:
            await asyncio.sleep(seconds)
            if self.capture:
                self.capture.flush()

    # -- invocations --------------------------------------------------------------------------
    async def _invocations(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        start = time.perf_counter()
        headers = dict(scope["headers"])
        body = await self._body(headers, receive)
        champion = self.slots["champion"]
        if champion is None:
            await _respond(send, 503, {"error": "no model is loaded; deploy one with `fabric deploy`"})
            return
        slot, model = "champion", champion
        canary = self.slots["canary"]
        if canary is not None and self.canary_percent:
            self._counter += 1
            if self._counter % 100 < self.canary_percent:
                slot, model = "canary", canary
        request_id = headers.get(b"x-request-id", b"").decode("latin-1") or f"{self._id_prefix}{next(self._ids):016x}"
        try:
            X, records, lookups = model.decode(body, headers.get(b"content-type", b"").decode("latin-1"))
        except BadRequest:  # the caller's fault: counted as a request and a bad request, not a model error
            self.metrics.observe(model.version, slot, (time.perf_counter() - start) * 1e3, 0)
            raise
        try:
            scores = (await model.batcher.score(X)).tolist()
        except Exception as exc:  # noqa: BLE001 - a broken model answers 500 and is counted, the server lives on
            self.metrics.observe(model.version, slot, (time.perf_counter() - start) * 1e3, len(records), error=True)
            await _respond(send, 500, {"error": f"model {model.version} failed: {type(exc).__name__}: {exc}"})
            return
        payload = orjson.dumps({"predictions": scores, "model": model.version, "request_id": request_id})
        await _respond_raw(send, 200, payload, [*JSON_HEADERS, (b"x-request-id", request_id.encode())])
        self.metrics.observe(model.version, slot, (time.perf_counter() - start) * 1e3, len(records))
        if self.capture is not None:
            self.capture.offer(request_id, model.version, slot, records, scores, lookups)
        shadow = self.slots["shadow"]
        if shadow is not None and slot == "champion":
            await self._score_shadow(shadow, body, headers, X, scores)

    async def _score_shadow(self, shadow: LoadedModel, body: bytes, headers: dict, X: np.ndarray, scores: list[float]) -> None:
        start = time.perf_counter()
        try:
            if shadow.schema != self.slots["champion"].schema:  # type: ignore[union-attr]
                X, _, _ = shadow.decode(body, headers.get(b"content-type", b"").decode("latin-1"))
            shadow_scores = await shadow.batcher.score(X)
            error = False
        except Exception:  # noqa: BLE001 - the shadow never affects the answer
            shadow_scores, error = None, True
        self.metrics.observe(shadow.version, "shadow", (time.perf_counter() - start) * 1e3, len(X), error=error)
        if shadow_scores is not None:
            self.metrics.compare_shadow(np.abs(np.asarray(scores) - shadow_scores).tolist())

    async def _body(self, headers: dict[bytes, bytes], receive: Any) -> bytes:
        length = headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_body_bytes:
            raise BadRequest(f"the body has {int(length)} bytes; the limit is serving.max_body_bytes={self.max_body_bytes}", 413)
        chunks, size = [], 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                raise BadRequest(f"the body passes serving.max_body_bytes={self.max_body_bytes}", 413)
            chunks.append(chunk)
            if not message.get("more_body"):
                return b"".join(chunks)

    # -- admin --------------------------------------------------------------------------------
    def _version(self, slot: str) -> str | None:
        model = self.slots[slot]
        return model.version if model else None

    def _model_calls(self) -> dict[tuple[str, str], int]:
        return {(model.version, slot): model.batcher.calls for slot, model in self.slots.items() if model is not None}

    def state(self) -> dict[str, Any]:
        compared = self.metrics.shadow_compared
        return {
            "slots": {slot: self._version(slot) for slot in SLOTS},
            "canary_percent": self.canary_percent,
            "series": self.metrics.summary(),
            "shadow": {
                "compared_rows": compared,
                "mean_abs_diff": self.metrics.shadow_abs_diff_sum / compared if compared else None,
                "max_abs_diff": self.metrics.shadow_abs_diff_max if compared else None,
            },
            "batching": {slot: {"joint": model.batcher.joint, "requests": model.batcher.requests, "model_calls": model.batcher.calls}
                         for slot, model in self.slots.items() if model is not None},  # fmt: skip
            "captured": self.capture.written if self.capture else 0,
            "capture_rate": self.capture.rate if self.capture else 0.0,
        }

    async def _admin(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        client = (scope.get("client") or ("",))[0]
        if client not in LOOPBACK:
            await _respond(send, 403, {"error": "admin routes answer loopback clients only"})
            return
        action = scope["path"].removeprefix("/admin/")
        if scope["method"] == "GET" and action == "state":
            await _respond(send, 200, self.state())
            return
        raw = await self._body(dict(scope["headers"]), receive)
        try:
            args = json.loads(raw or b"{}")
        except ValueError:
            raise BadRequest("admin body must be JSON") from None
        if action == "load":
            slot = args.get("slot", "champion")
            if slot not in SLOTS:
                raise BadRequest(f"slot={slot!r} is unknown; use one of {SLOTS}")
            try:
                model = await asyncio.to_thread(LoadedModel.load, Path(args["path"]), args["version"], args.get("stack"))
            except (KeyError, OSError, ValueError) as exc:
                raise BadRequest(f"cannot load {args.get('version')} from {args.get('path')}: {exc}", 422) from None
            except Exception as exc:  # noqa: BLE001 - e.g. ONNX Runtime refusing the graph
                raise BadRequest(f"cannot load {args.get('version')}: {type(exc).__name__}: {exc}", 422) from None
            if slot == "champion" and self.slots["champion"] is not None:
                self.slots["standby"] = self.slots["champion"]
            self.slots[slot] = model
        elif action == "traffic":
            percent = int(args.get("canary_percent", 0))
            if not 0 <= percent <= 100:
                raise BadRequest(f"canary_percent={percent} must lie in [0, 100]")
            self.canary_percent = percent
        elif action == "promote":  # the canary (or shadow) becomes champion; the old one stands by
            source = args.get("slot", "canary")
            if self.slots.get(source) is None:
                raise BadRequest(f"slot {source} is empty; nothing to promote", 409)
            self.slots["standby"], self.slots["champion"] = self.slots["champion"], self.slots[source]
            self.slots[source] = None
            self.canary_percent = 0
        elif action == "clear":
            slot = args.get("slot", "canary")
            if slot == "champion" or slot not in SLOTS:
                raise BadRequest(f"slot={slot!r} cannot be cleared; use canary, shadow or standby")
            self.slots[slot] = None
            if slot == "canary":
                self.canary_percent = 0
        elif action == "flush":  # the monitor reads capture files: write what is buffered first
            if self.capture:
                self.capture.flush()
        elif action == "switch":  # blue/green: standby and champion trade places
            if self.slots["standby"] is None:
                raise BadRequest("no standby model to switch to", 409)
            self.slots["champion"], self.slots["standby"] = self.slots["standby"], self.slots["champion"]
        else:
            await _respond(send, 404, {"error": f"no admin action {action!r}"})
            return
        await _respond(send, 200, self.state())


async def _respond(send: Any, status: int, payload: dict[str, Any]) -> None:
    await _respond_raw(send, status, json.dumps(payload).encode(), JSON_HEADERS)


async def _respond_text(send: Any, status: int, text: str, content_type: bytes) -> None:
    await _respond_raw(send, status, text.encode(), [(b"content-type", content_type)])


async def _respond_raw(send: Any, status: int, body: bytes, headers: list[tuple[bytes, bytes]]) -> None:
    await send({"type": "http.response.start", "status": status,
                "headers": [*headers, (b"content-length", str(len(body)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": body})
