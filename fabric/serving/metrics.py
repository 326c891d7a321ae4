"""Prometheus text metrics kept by hand: counters and a fixed-bucket latency histogram per model
version and slot. One event loop thread updates them, so no locks are needed."""

from __future__ import annotations

import bisect
from collections import defaultdict
from dataclasses import dataclass, field

BUCKETS_MS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 1000.0)


@dataclass
class Series:
    requests: int = 0
    errors: int = 0  # 5xx answered for this version (a 4xx is the caller's bad input)
    rows: int = 0
    latency_sum_ms: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_MS) + 1))
    recent_ms: list[float] = field(default_factory=list)  # bounded, for canary judgements

    def observe(self, ms: float, rows: int, error: bool) -> None:
        self.requests += 1
        self.rows += rows
        self.errors += error
        self.latency_sum_ms += ms
        self.buckets[bisect.bisect_left(BUCKETS_MS, ms)] += 1
        self.recent_ms.append(ms)
        if len(self.recent_ms) > 20_000:
            del self.recent_ms[:10_000]


class Metrics:
    def __init__(self) -> None:
        self.series: dict[tuple[str, str], Series] = defaultdict(Series)
        self.bad_requests = 0  # rejected before any model was chosen (content type, size, JSON)
        self.shadow_compared = 0
        self.shadow_abs_diff_sum = 0.0
        self.shadow_abs_diff_max = 0.0

    def observe(self, version: str, slot: str, ms: float, rows: int, error: bool = False) -> None:
        self.series[(version, slot)].observe(ms, rows, error)

    def compare_shadow(self, diffs: list[float]) -> None:
        self.shadow_compared += len(diffs)
        self.shadow_abs_diff_sum += sum(diffs)
        self.shadow_abs_diff_max = max([self.shadow_abs_diff_max, *diffs])

    def summary(self) -> dict[str, dict[str, float | int]]:
        out = {}
        for (version, slot), s in self.series.items():
            recent = sorted(s.recent_ms)
            p99 = recent[min(len(recent) - 1, int(0.99 * len(recent)))] if recent else None
            out[f"{slot}/{version}"] = {
                "version": version, "slot": slot, "requests": s.requests, "errors": s.errors,
                "error_rate": s.errors / s.requests if s.requests else 0.0, "p99_ms": p99,
            }  # fmt: skip
        return out

    def render(self, model_calls: dict[tuple[str, str], int] | None = None) -> str:
        """The text exposition; `model_calls` (per loaded version and slot) are ONNX Runtime calls,
        fewer than requests when concurrent requests were micro-batched."""
        lines = [
            "# HELP fabric_requests_total Invocations answered, per model version and slot.",
            "# TYPE fabric_requests_total counter",
        ]
        for (version, slot), s in self.series.items():
            lines.append(f'fabric_requests_total{{version="{version}",slot="{slot}"}} {s.requests}')
        lines += ["# HELP fabric_errors_total Invocations answered with an error.", "# TYPE fabric_errors_total counter"]
        for (version, slot), s in self.series.items():
            lines.append(f'fabric_errors_total{{version="{version}",slot="{slot}"}} {s.errors}')
        lines += ["# HELP fabric_rows_total Rows scored.", "# TYPE fabric_rows_total counter"]
        for (version, slot), s in self.series.items():
            lines.append(f'fabric_rows_total{{version="{version}",slot="{slot}"}} {s.rows}')
        lines += ["# HELP fabric_model_calls_total Model (ONNX Runtime) calls; requests over calls is the mean micro-batch.",
                  "# TYPE fabric_model_calls_total counter"]  # fmt: skip
        for (version, slot), calls in (model_calls or {}).items():
            lines.append(f'fabric_model_calls_total{{version="{version}",slot="{slot}"}} {calls}')
        lines += [
            "# HELP fabric_request_duration_ms Time in the server per invocation (decode, predict, encode).",
            "# TYPE fabric_request_duration_ms histogram",
        ]
        for (version, slot), s in self.series.items():
            labels = f'version="{version}",slot="{slot}"'
            cumulative = 0
            for bound, count in zip((*BUCKETS_MS, "+Inf"), s.buckets, strict=True):
                cumulative += count
                lines.append(f'fabric_request_duration_ms_bucket{{{labels},le="{bound}"}} {cumulative}')
            lines.append(f"fabric_request_duration_ms_sum{{{labels}}} {s.latency_sum_ms:.6f}")
            lines.append(f"fabric_request_duration_ms_count{{{labels}}} {s.requests}")
        lines += [
            "# HELP fabric_bad_requests_total Requests rejected before reaching a model.",
            "# TYPE fabric_bad_requests_total counter",
            f"fabric_bad_requests_total {self.bad_requests}",
            "# HELP fabric_shadow_compared_total Rows scored by both champion and shadow.",
            "# TYPE fabric_shadow_compared_total counter",
            f"fabric_shadow_compared_total {self.shadow_compared}",
            "# HELP fabric_shadow_abs_diff_max Largest |champion - shadow| score difference.",
            "# TYPE fabric_shadow_abs_diff_max gauge",
            f"fabric_shadow_abs_diff_max {self.shadow_abs_diff_max}",
        ]
        return "\n".join(lines) + "\n"
