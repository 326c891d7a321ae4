"""Automatic rollback on the candidate's `/metrics`: the rollout loop scrapes real HTTP servers
(on loopback) that speak the Prometheus text format, steps the canary, and promotes a healthy
candidate or rolls a bad one back at the first bad step."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fabric.backends.kubernetes.metrics import Sample, judge, parse, quantile
from fabric.backends.kubernetes.rollout_controller import run_rollout

BOUNDS = (0.001, 0.005, 0.01, 0.05, 0.1)


class Candidate:
    """A model server's counters. Traffic arrives with each scrape, in proportion to the route's weight."""

    def __init__(self, error_rate: float, latency_s: float) -> None:
        self.error_rate, self.latency_s = error_rate, latency_s
        self.percent, self.ok, self.errors, self.pings = 0, 0, 0, 0
        self.lock = threading.Lock()

    def advance(self) -> None:
        arriving = self.percent * 2
        errors = round(arriving * self.error_rate)
        self.errors, self.ok, self.pings = self.errors + errors, self.ok + arriving - errors, self.pings + 100

    def text(self) -> str:
        with self.lock:
            self.advance()
            total = self.ok + self.errors
            lines = [
                "# HELP fabric_requests_total Requests by path and status.",
                "# TYPE fabric_requests_total counter",
                f'fabric_requests_total{{path="/invocations",status="200"}} {self.ok}',
                f'fabric_requests_total{{path="/invocations",status="500"}} {self.errors}',
                f'fabric_requests_total{{path="/ping",status="200"}} {self.pings}',  # probes: not traffic
                "# TYPE fabric_request_duration_seconds histogram",
            ]
            for le in BOUNDS:
                count = total if self.latency_s <= le else 0
                lines.append(f'fabric_request_duration_seconds_bucket{{path="/invocations",le="{le}"}} {count}')
            lines.append(f'fabric_request_duration_seconds_bucket{{path="/invocations",le="+Inf"}} {total}')
            lines.append(f'fabric_request_duration_seconds_count{{path="/invocations"}} {total}')
            return "\n".join(lines) + "\n"


@contextmanager
def metrics_server(candidate: Candidate) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server's name
            body = candidate.text().encode()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/metrics"
    finally:
        server.shutdown()
        server.server_close()


class Route:
    """Moves traffic by telling the candidates their share; records what the loop asked for."""

    def __init__(self, candidates: dict[str, tuple[Candidate, str]]) -> None:
        self.candidates, self.calls = candidates, []

    def route(self, percent: int) -> None:
        self.calls.append(("route", percent))
        for candidate, _ in self.candidates.values():
            with candidate.lock:
                candidate.percent = percent

    def targets(self) -> dict[str, str]:
        return {name: url for name, (_, url) in self.candidates.items()}

    def promote(self) -> None:
        self.calls.append(("promote", None))

    def abort(self) -> None:
        self.calls.append(("abort", None))
        self.route(0)


def _rollout(error_rate: float, latency_s: float, strategy: str = "canary", pods: int = 2):
    candidates = [Candidate(error_rate, latency_s) for _ in range(pods)]
    with metrics_server(candidates[0]) as first, metrics_server(candidates[1]) as second:
        route = Route({"pod-a": (candidates[0], first), "pod-b": (candidates[1], second)})
        outcome = run_rollout(route, strategy, [10, 50, 100], step_requests=200, max_error_rate=0.01,
                              max_p99_ms=20.0, step_timeout_s=10, poll_s=0.01, log=lambda _: None)  # fmt: skip
    return outcome, route.calls


def test_a_healthy_canary_is_stepped_up_and_promoted() -> None:
    outcome, calls = _rollout(error_rate=0.0, latency_s=0.004)
    assert outcome.promoted and not outcome.rolled_back
    assert calls == [("route", 10), ("route", 50), ("route", 100), ("promote", None)]
    assert [s["percent"] for s in outcome.steps] == [10, 50, 100]
    assert all(s["ok"] and s["requests"] >= 200 and s["error_rate"] == 0 for s in outcome.steps)
    assert all(s["p99_ms"] <= 5.0 for s in outcome.steps)


def test_a_failing_canary_is_rolled_back_at_the_first_step() -> None:
    outcome, calls = _rollout(error_rate=0.05, latency_s=0.004)
    assert outcome.rolled_back and not outcome.promoted
    assert calls == [("route", 10), ("abort", None), ("route", 0)]
    assert outcome.reason.startswith("rolled back at 10%: error rate 0.05")


def test_a_slow_canary_is_rolled_back_on_p99() -> None:
    outcome, calls = _rollout(error_rate=0.0, latency_s=0.05)
    assert outcome.rolled_back and ("promote", None) not in calls
    assert "p99" in outcome.reason and "> 20.0 ms" in outcome.reason


def test_a_shadow_is_judged_then_stopped_never_promoted() -> None:
    outcome, calls = _rollout(error_rate=0.0, latency_s=0.004, strategy="shadow")
    assert outcome.ok and not outcome.promoted and outcome.reason == "shadow passed"
    assert calls == [("route", 100), ("abort", None), ("route", 0)]


def test_a_candidate_without_traffic_is_not_promoted() -> None:
    with metrics_server(Candidate(0.0, 0.004)) as url:
        class Idle(Route):
            def route(self, percent: int) -> None:
                self.calls.append(("route", percent))  # traffic never arrives

        idle = Idle({"pod-a": (Candidate(0.0, 0.004), url)})
        outcome = run_rollout(idle, "canary", [50, 100], 200, 0.01, None, step_timeout_s=0.3, poll_s=0.05, log=lambda _: None)
    assert outcome.rolled_back and "only 0 of rollout.step_requests=200 requests" in outcome.reason


def test_prometheus_text_is_read_like_promql() -> None:
    text = (
        '# TYPE fabric_requests_total counter\n'
        'fabric_requests_total{code="200"} 90\nfabric_requests_total{code="503"} 10\n'
        'fabric_requests_total{code="404"} 5\n'
        'fabric_request_duration_seconds_bucket{le="0.01"} 50\n'
        'fabric_request_duration_seconds_bucket{le="0.02"} 100\n'
        'fabric_request_duration_seconds_bucket{le="+Inf"} 105 1712000000000\n'
    )
    sample = parse(text)
    assert (sample.requests, sample.errors) == (105, 10)  # a 404 is the caller's error, a 503 the model's
    assert quantile(0.5, sample.buckets) == pytest.approx(0.0105)  # linear inside (0.01, 0.02]
    assert quantile(0.99, sample.buckets) == 0.02  # in the +Inf bucket: the top finite bound
    later = Sample(requests=5, errors=0, buckets={0.01: 5.0})
    assert later.since(sample) is later  # counters went down: the server restarted
    verdict = judge(sample, max_error_rate=0.05, max_p99_ms=None)
    assert not verdict.ok and verdict.error_rate == pytest.approx(10 / 105)


def test_the_judge_reads_the_real_model_server_metrics() -> None:
    from fabric.backends.kubernetes import metrics as k8s_metrics
    from fabric.serving.metrics import Metrics

    served = Metrics()
    for i in range(100):
        served.observe("fraud:2", "champion", 0.3 if i < 98 else 40.0, rows=1, error=i < 3)
    sample = k8s_metrics.parse(served.render())
    assert sample.requests == 100 and sample.errors == 3
    verdict = k8s_metrics.judge(sample, max_error_rate=0.01, max_p99_ms=None)
    assert not verdict.ok and "error rate 0.0300" in verdict.reason
    p99 = k8s_metrics.quantile(0.99, sample.buckets)
    assert p99 is not None and 0.025 <= p99 <= 0.05  # seconds: the 40 ms tail, from the ms buckets
