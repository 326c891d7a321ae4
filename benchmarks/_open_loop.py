"""Open-loop HTTP load generator for benchmarks/serve.py, run as its own process on its own CPU.

Every request has a scheduled send time (start + i / rate) and its latency is counted from that time,
so a server that falls behind shows its queueing (no coordinated omission). For those tails to
describe the server and not the generator, the generator must not stall:
  - one single-threaded epoll loop over keep-alive, non-blocking sockets (no asyncio, no threads:
    task scheduling and the GIL cost tens of microseconds each and bunch up under load);
  - send times from a timerfd armed at the absolute next send time, woken by the kernel with
    microsecond precision while the same epoll_wait also wakes on each response (sleeps with
    millisecond granularity made the previous generator late by up to a millisecond per request);
  - garbage collection off for the run (a collection over the latency list paused it for tens of
    milliseconds), preallocated result arrays, the process pinned to the CPU it is given.
It also reports its own lateness (actual send minus scheduled send): the floor of what it can
measure. Only the standard library, so it starts fast and nothing else runs in its process.

On a shared machine other processes preempt the generator on its CPU (seen here: send lag p99 of
6 ms with four other busy processes on two cores). With `realtime` it asks for SCHED_FIFO (root or
CAP_SYS_NICE; it blocks in epoll between events, so it never spins) and says whether it got it.

    python benchmarks/_open_loop.py PORT RATE SECONDS CPU PAYLOAD_FILE [realtime]  ->  one JSON line
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import select
import socket
import sys
import time
from array import array
from typing import Any

CLOCK_MONOTONIC, TFD_NONBLOCK, TFD_CLOEXEC, TFD_TIMER_ABSTIME = 1, 0o4000, 0o2000000, 1
CONNECTIONS = 64


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class _Itimerspec(ctypes.Structure):
    _fields_ = [("it_interval", _Timespec), ("it_value", _Timespec)]


class Timer:
    """A timerfd on CLOCK_MONOTONIC (the clock of time.monotonic_ns), armed at absolute times."""

    def __init__(self) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self.fd = self._libc.timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "timerfd_create")
        self._spec = _Itimerspec()

    def at(self, ns: int) -> None:
        self._spec.it_value.tv_sec, self._spec.it_value.tv_nsec = divmod(max(ns, 1), 1_000_000_000)
        if self._libc.timerfd_settime(self.fd, TFD_TIMER_ABSTIME, ctypes.byref(self._spec), None) != 0:
            raise OSError(ctypes.get_errno(), "timerfd_settime")

    def clear(self) -> None:
        try:
            os.read(self.fd, 8)
        except BlockingIOError:
            pass


def request_bytes(port: int, payload: bytes) -> bytes:
    return (
        f"POST /invocations HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload


class _Connection:
    __slots__ = ("sock", "buffer", "scheduled")

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.buffer = b""
        self.scheduled = 0


def _response_status(buffer: bytes) -> tuple[int, int] | None:
    """(status, bytes used) once `buffer` holds one whole response with a Content-Length, else None."""
    end = buffer.find(b"\r\n\r\n")
    if end < 0:
        return None
    length = 0
    for line in buffer[:end].split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if len(buffer) < end + 4 + length:
        return None
    return int(buffer[9:12]), end + 4 + length


def _percentile(sorted_ms: list[float], q: float) -> float:
    return sorted_ms[min(len(sorted_ms) - 1, int(q * len(sorted_ms)))] if sorted_ms else float("nan")


def generate(port: int, payload: bytes, rate: float, seconds: float) -> dict[str, Any]:
    message = request_bytes(port, payload)
    total = int(rate * seconds)
    interval = 1e9 / rate
    clock = time.monotonic_ns
    pool = [_Connection(port) for _ in range(CONNECTIONS)]
    by_fd = {c.sock.fileno(): c for c in pool}
    idle = list(pool)
    timer = Timer()
    poller = select.epoll()
    poller.register(timer.fd, select.EPOLLIN)
    for fd in by_fd:
        poller.register(fd, select.EPOLLIN)
    latency_ns = array("q", bytes(8 * total))
    lag_ns = array("q", bytes(8 * total))
    answered = measured = errors = sent = 0
    opened = len(pool)
    start = clock() + 50_000_000
    give_up = start + int((seconds + 30) * 1e9)
    timer.at(start)
    while answered < total and clock() < give_up:
        now = clock()
        while sent < total and start + int(sent * interval) <= now:
            scheduled = start + int(sent * interval)
            for _attempt in range(2):  # a keep-alive connection the server just closed: one retry on a new one
                conn = idle.pop() if idle else None
                if conn is None:  # every connection is waiting: open another, as a real client would
                    conn = _Connection(port)
                    opened += 1
                    by_fd[conn.sock.fileno()] = conn
                    poller.register(conn.sock.fileno(), select.EPOLLIN)
                try:
                    written = conn.sock.send(message)
                    if written < len(message):  # a full socket buffer: finish this one request blocking
                        conn.sock.setblocking(True)
                        conn.sock.sendall(message[written:])
                        conn.sock.setblocking(False)
                except OSError:
                    poller.unregister(conn.sock.fileno())
                    del by_fd[conn.sock.fileno()]
                    conn.sock.close()
                    continue
                conn.scheduled = scheduled
                break
            else:
                errors += 1
                answered += 1
            now = clock()
            lag_ns[sent] = now - scheduled
            sent += 1
        if sent < total:
            timer.at(start + int(sent * interval))
        for fd, _ in poller.poll(1.0):
            if fd == timer.fd:
                timer.clear()
                continue
            conn = by_fd[fd]
            try:
                data = conn.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:  # closed by the server: an error mid-request, else an idle keep-alive timeout
                poller.unregister(fd)
                conn.sock.close()
                del by_fd[fd]
                if conn.scheduled:
                    errors += 1
                    answered += 1
                else:
                    idle.remove(conn)
                continue
            conn.buffer += data
            done = _response_status(conn.buffer)
            if done is None:
                continue
            status, used = done
            latency_ns[measured] = clock() - conn.scheduled
            measured += 1
            errors += status != 200
            answered += 1
            conn.buffer, conn.scheduled = conn.buffer[used:], 0
            idle.append(conn)
    errors += total - answered  # never answered before giving up
    for conn in by_fd.values():
        conn.sock.close()
    ms = sorted(v / 1e6 for v in latency_ns[:measured])
    lag = sorted(v / 1e6 for v in lag_ns[:sent])
    return {
        "rate": rate, "requests": total, "errors": errors,
        "p50_ms": _percentile(ms, 0.50), "p95_ms": _percentile(ms, 0.95), "p99_ms": _percentile(ms, 0.99),
        "max_ms": ms[-1] if ms else float("nan"),
        "send_lag_p99_ms": _percentile(lag, 0.99), "send_lag_max_ms": lag[-1] if lag else float("nan"),
        "connections": opened,
    }  # fmt: skip


def main() -> None:
    port, rate, seconds, cpu, payload_file = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4], sys.argv[5]
    if cpu != "any":
        os.sched_setaffinity(0, {int(cpu)})
    realtime = sys.argv[6:7] == ["realtime"] and set_realtime(0, True)
    with open(payload_file, "rb") as f:
        payload = f.read()
    gc.disable()
    result = generate(port, payload, rate, seconds)
    print(json.dumps({**result, "generator_realtime": realtime}))


def set_realtime(pid: int, on: bool) -> bool:
    """SCHED_FIFO (priority 50) for `pid`'s main thread, or back to the normal policy; False when not permitted."""
    try:
        if on:
            os.sched_setscheduler(pid, os.SCHED_FIFO, os.sched_param(50))
        else:
            os.sched_setscheduler(pid, os.SCHED_OTHER, os.sched_param(0))
    except (PermissionError, ProcessLookupError):
        return False
    return True


if __name__ == "__main__":
    main()
