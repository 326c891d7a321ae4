"""What the rollout judge reads from a model server's `GET /metrics` (Prometheus text format).

The contract with fabric.serving, by name:
- `fabric_requests_total` (counter) with the HTTP status in a `status` (or `code`) label; when it has
  a `path`/`route`/`handler` label only `/invocations` counts (probes hit /ping all the time);
- `fabric_request_duration_seconds` (histogram): `_bucket{le=...}` cumulative counts;
- or, as fabric.serving exports them: `fabric_requests_total{version,slot}`, `fabric_errors_total`
  (5xx answers) and `fabric_request_duration_ms` buckets in milliseconds.
Errors are 5xx answers: a 4xx is the caller's bad request, not the model's fault.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

REQUESTS = "fabric_requests_total"
DURATION = "fabric_request_duration_seconds"
DURATION_MS = "fabric_request_duration_ms"  # what fabric.serving exports (buckets in milliseconds)
ERRORS = "fabric_errors_total"
SCORED_PATH = "/invocations"
_LINE = re.compile(r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(?P<labels>.*)\})?\s+(?P<value>\S+)(?:\s+\S+)?$")
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class Sample:
    """Counters of one server (or a sum of several) at one moment."""

    requests: float = 0.0
    errors: float = 0.0
    buckets: dict[float, float] = field(default_factory=dict)  # le (seconds) -> cumulative count

    def __add__(self, other: Sample) -> Sample:
        keys = set(self.buckets) | set(other.buckets)
        return Sample(
            self.requests + other.requests,
            self.errors + other.errors,
            {k: self.buckets.get(k, 0.0) + other.buckets.get(k, 0.0) for k in keys},
        )

    def since(self, before: Sample) -> Sample:
        """What happened between `before` and this sample; a counter that went down was reset by a restart."""
        if self.requests < before.requests:
            return self
        keys = set(self.buckets) | set(before.buckets)
        return Sample(
            self.requests - before.requests,
            self.errors - before.errors,
            {k: self.buckets.get(k, 0.0) - before.buckets.get(k, 0.0) for k in keys},
        )


def _scored(labels: dict[str, str]) -> bool:
    path = labels.get("path") or labels.get("route") or labels.get("handler")
    return path is None or path == SCORED_PATH


def parse(text: str) -> Sample:
    requests = errors = 0.0
    buckets: dict[float, float] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            continue
        name, value = match["name"], float(match["value"])
        labels = dict(_LABEL.findall(match["labels"] or ""))
        if not _scored(labels):
            continue
        if name == REQUESTS:
            requests += value
            status = labels.get("status") or labels.get("code") or ""
            if status.startswith("5"):
                errors += value
        elif name == ERRORS:  # fabric.serving counts 5xx answers per version and slot
            errors += value
        elif name in (f"{DURATION}_bucket", f"{DURATION_MS}_bucket") and "le" in labels:
            le = math.inf if labels["le"] in ("+Inf", "Inf") else float(labels["le"])
            if name == f"{DURATION_MS}_bucket":
                le /= 1000.0
            buckets[le] = buckets.get(le, 0.0) + value
    return Sample(requests, errors, buckets)


def quantile(q: float, buckets: dict[float, float]) -> float | None:
    """Like PromQL's histogram_quantile: linear inside the bucket that holds the q-th observation."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for le in bounds:
        count = buckets[le]
        if count >= rank:
            if math.isinf(le):
                return lower  # the top finite bound: all one can say
            width = count - below
            return lower + (le - lower) * ((rank - below) / width if width > 0 else 1.0)
        lower, below = le, count
    return lower


@dataclass(frozen=True)
class Verdict:
    ok: bool
    requests: int
    error_rate: float
    p99_ms: float | None
    reason: str

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "requests": self.requests,
            "error_rate": round(self.error_rate, 5),
            "p99_ms": None if self.p99_ms is None else round(self.p99_ms, 3),
            "reason": self.reason,
        }


def judge(window: Sample, max_error_rate: float, max_p99_ms: float | None) -> Verdict:
    requests = int(window.requests)
    rate = window.errors / window.requests if window.requests > 0 else 0.0
    p99_s = quantile(0.99, window.buckets)
    p99 = None if p99_s is None else p99_s * 1000
    if requests == 0:
        return Verdict(False, 0, 0.0, p99, "no requests reached the candidate")
    if rate > max_error_rate:
        return Verdict(False, requests, rate, p99, f"error rate {rate:.4f} > rollout.max_error_rate {max_error_rate}")
    if max_p99_ms is not None and p99 is not None and p99 > max_p99_ms:
        return Verdict(False, requests, rate, p99, f"p99 {p99:.2f} ms > {max_p99_ms} ms")
    return Verdict(True, requests, rate, p99, "within error rate and latency")


def scrape(url: str, timeout_s: float = 2.0) -> Sample:
    import httpx

    response = httpx.get(url, timeout=timeout_s)
    response.raise_for_status()
    return parse(response.text)
