"""Model-server latency and throughput on loopback, side by side in one run.

Servers (each one uvicorn worker, uvloop + httptools, pinned to CPU 0; the load generator on CPU 1):
  constant        an ASGI app answering a constant: the generator's own floor
  bare            Starlette + ONNX Runtime, the same model, nothing else (the bare floor)
  fabric-<model>  this project's server with everything on: schema validation, metrics, capture
                  (and its micro-batching of concurrent requests, fabric/serving/batching.py)
Models: a 200-tree LightGBM (fp32; integer precisions do not apply to tree ensembles) and a
3x256 MLP in fp32 and INT8.

Open loop: fixed-rate single-row requests at 500, 1,000 and 2,000 rps; latency is counted from each
request's *scheduled* send time, so a server that falls behind shows its queueing (no coordinated
omission). The generator (benchmarks/_open_loop.py) is its own process on CPU 1 with garbage
collection off: one epoll loop over keep-alive sockets, woken at each send time by a timerfd; it
reports its own send lag, and the constant server's p99 is the floor under every other number.
`--realtime` also gives the server and the generator (and wrk) SCHED_FIFO during each run (root or
CAP_SYS_NICE), so that other processes on a shared machine do not preempt them.
Closed loop: wrk's maximum throughput (when `wrk` is installed: apt-get install wrk).
Then, at 1,000 rps: failed requests during 10 hot swaps and a canary that is rolled back, and the
time from `deploy` to `/ping` healthy on a new endpoint (registry-to-live).

    python benchmarks/serve.py [--seconds 10] [--rates 500 1000 2000] [--realtime] [--only constant bare fabric] [--no-swaps]
Prints a table and writes benchmarks/results/serve.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _open_loop import set_realtime  # noqa: E402 - beside this file

PY = sys.executable
SERVER_CPU, CLIENT_CPU = "0", "1"


# -- models -------------------------------------------------------------------------------------
def build_models(folder: Path) -> tuple[dict[str, Path], dict[str, Any], Any]:
    from fabric.data.dataset import prepare
    from fabric.families import get_family
    from fabric.quantize import quantize_int8
    from fabric.search import fit_data
    from fabric.spec import PipelineSpec

    spec = PipelineSpec.model_validate({
        "name": "fraud", "task": "binary", "metric": "roc_auc", "latency_budget": {"p99_ms": 2.0},
        "data": {"source": "builtin:fraud", "target": "is_fraud", "time_column": "event_time",
                 "id_column": "transaction_id", "rows": 50_000},
        "search": {"budget_s": 60},
    })  # fmt: skip
    dataset = prepare(spec)
    data = fit_data(dataset, spec, deadline=None)
    lgb_params = {"learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20, "feature_fraction": 0.9,
                  "bagging_fraction": 0.9, "lambda_l2": 1.0, "rounds": 200}  # fmt: skip
    mlp_params = {"hidden": 256, "layers": 3, "dropout": 0.0, "lr": 1e-3, "weight_decay": 1e-5, "batch_size": 512, "epochs": 3}
    n = dataset.train.X.shape[1]
    lgb = get_family("lightgbm")
    mlp = get_family("mlp")
    graphs = {
        "lgb200-fp32": lgb.to_onnx(lgb.fit(lgb_params, data), n),
        "mlp-fp32": mlp.to_onnx(mlp.fit(mlp_params, data), n),
    }
    graphs["mlp-int8"] = quantize_int8(graphs["mlp-fp32"])
    dirs = {}
    for name, graph in graphs.items():
        d = folder / name
        d.mkdir()
        (d / "model.onnx").write_bytes(graph)
        (d / "schema.json").write_text(json.dumps(dataset.schema.to_dict()))
        dirs[name] = d
    frame = dataset.test.frame.iloc[0]
    record = {f.name: (str(frame[f.name]) if f.kind == "categorical" else float(frame[f.name])) for f in dataset.schema.features}
    sizes = {name: len(g) for name, g in graphs.items()}
    return dirs, {"record": record, "sizes": sizes}, dataset


# -- servers ------------------------------------------------------------------------------------
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(command: list[str], port: int) -> subprocess.Popen:
    process = subprocess.Popen(["taskset", "-c", SERVER_CPU, *command], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                time.sleep(0.3)
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError(f"server did not start: {command}: {process.stderr.read().decode()[-500:] if process.stderr else ''}")


def fabric_server(model_dir: Path, port: int, capture: Path) -> subprocess.Popen:
    return start([PY, "-m", "fabric.serving", "serve", "--model-dir", str(model_dir), "--version", f"{model_dir.name}:1",
                  "--port", str(port), "--capture-dir", str(capture), "--capture-rate", "1.0"], port)  # fmt: skip


def reference_server(kind: str, model_dir: Path, port: int) -> subprocess.Popen:
    return start([PY, str(Path(__file__).parent / "_reference_apps.py"), kind, str(model_dir / "model.onnx"),
                  str(model_dir / "schema.json"), str(port)], port)  # fmt: skip


# -- load ---------------------------------------------------------------------------------------
REALTIME = {"on": False}  # set by --realtime: SCHED_FIFO for the server and the load generator during each run


def run_open_loop(port: int, payload: bytes, rate: float, seconds: float, server_pid: int | None = None) -> dict[str, Any]:
    """benchmarks/_open_loop.py in its own process on CLIENT_CPU (see its docstring for why)."""
    payload_file = Path(tempfile.mkdtemp()) / "payload.json"
    payload_file.write_bytes(payload)
    realtime = REALTIME["on"] and server_pid is not None and set_realtime(server_pid, True)
    try:
        command = [PY, str(Path(__file__).parent / "_open_loop.py"), str(port), str(rate), str(seconds), CLIENT_CPU,
                   str(payload_file), *(["realtime"] if REALTIME["on"] else [])]  # fmt: skip
        out = subprocess.run(command, capture_output=True, text=True, timeout=seconds + 120)
    finally:
        if realtime:
            set_realtime(server_pid, False)  # type: ignore[arg-type]
        shutil.rmtree(payload_file.parent, ignore_errors=True)
    if out.returncode != 0:
        raise RuntimeError(f"load generator failed: {out.stderr[-800:]}")
    return {**json.loads(out.stdout), "server_realtime": realtime}


def closed_loop(port: int, payload: bytes, seconds: float, server_pid: int | None = None) -> dict[str, Any] | None:
    """wrk on CLIENT_CPU (with --realtime, wrk and the server under SCHED_FIFO for the run)."""
    if shutil.which("wrk") is None:
        return None
    realtime = REALTIME["on"] and server_pid is not None and set_realtime(server_pid, True)
    script = Path(tempfile.mkdtemp()) / "post.lua"
    script.write_text(
        'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f"wrk.body = {json.dumps(payload.decode())}\n"
    )
    command = ["taskset", "-c", CLIENT_CPU, *(["chrt", "-f", "50"] if realtime else []), "wrk", "-t1", "-c32",
               f"-d{int(seconds)}s", "-s", str(script), f"http://127.0.0.1:{port}/invocations"]  # fmt: skip
    try:
        out = subprocess.run(command, capture_output=True, text=True).stdout
    finally:
        if realtime:
            set_realtime(server_pid, False)  # type: ignore[arg-type]
    rps = next((float(line.split()[1]) for line in out.splitlines() if line.startswith("Requests/sec")), None)
    non_2xx = next((int(line.split()[-1]) for line in out.splitlines() if "Non-2xx" in line), 0)
    return {"rps": rps, "non_2xx": non_2xx}


# -- swaps under load ---------------------------------------------------------------------------
def swaps_under_load(model_dirs: dict[str, Path], payload: bytes, seconds: float) -> dict[str, Any]:
    """10 hot swaps and one canary rolled back (p99 limit set impossibly low) at 1,000 rps, through
    the real deploy path (registry + endpoint), plus registry-to-live for a new endpoint."""
    from fabric.backends.local_deploy import LocalDeployer
    from fabric.registry import Lineage, Registry
    from fabric.serving.endpoints import Endpoints
    from fabric.spec import RolloutSpec, load_stack

    home = Path(tempfile.mkdtemp())
    registry = Registry(home / "registry")
    lineage = Lineage("fp", "spec", "code", None, None, None, "bench", "lightgbm")
    versions = []
    for _ in range(2):
        with registry.stage() as staged:
            for f in model_dirs["lgb200-fp32"].iterdir():
                shutil.copy(f, staged / f.name)
            versions.append(registry.register("fraud", staged, lineage, {}, {}))
    deployer = LocalDeployer(load_stack("dev"), registry, Endpoints(home, "bench"))
    clock = time.monotonic()
    first = deployer.deploy(versions[0].address, "all_at_once")
    registry_to_live = time.monotonic() - clock
    port = int(first.url.rsplit(":", 1)[1])
    subprocess.run(["taskset", "-p", "-c", SERVER_CPU, str(deployer.endpoints.get("fraud").pid)], capture_output=True)
    result: dict[str, Any] = {}
    swap_s: list[float] = []

    def operate() -> None:
        time.sleep(1.0)
        for i in range(10):
            t = time.monotonic()
            deployer.deploy(versions[(i + 1) % 2].address, "all_at_once")
            swap_s.append(time.monotonic() - t)
            time.sleep(0.2)
        strict = RolloutSpec(strategy="canary", steps=[10, 100], max_p99_ms=1e-6, step_requests=200)
        canary = deployer.deploy(versions[0].address if deployer.endpoints.get("fraud").champion != versions[0].address
                                 else versions[1].address, "canary", rollout=strict, step_timeout_s=20)  # fmt: skip
        result["canary"] = {"outcome": canary.outcome, "reason": canary.reason}

    operator = threading.Thread(target=operate)
    operator.start()
    load = run_open_loop(port, payload, 1000, seconds, deployer.endpoints.get("fraud").pid)
    operator.join()
    deployer.endpoints.stop("fraud")
    return {"registry_to_live_s": round(registry_to_live, 3), "swap_s_max": round(max(swap_s), 3),
            "load": load, **result}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rates", type=float, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    parser.add_argument("--realtime", action="store_true",
                        help="run the server and the load generator (and wrk) with SCHED_FIFO during each run (root or "
                             "CAP_SYS_NICE), so that other processes on a shared machine do not preempt them")
    parser.add_argument("--only", nargs="+", default=None, help="servers to run, e.g. constant bare fabric")
    parser.add_argument("--no-swaps", action="store_true", help="skip the swaps-under-load run")
    args = parser.parse_args()
    REALTIME["on"] = args.realtime

    folder = Path(tempfile.mkdtemp(prefix="fabric-serve-bench-"))
    dirs, info, _ = build_models(folder)
    payload = json.dumps({"records": [info["record"]]}).encode()
    targets = [("constant", None, "lgb200-fp32"), ("bare", None, "lgb200-fp32"), ("fabric", None, "lgb200-fp32"),
               ("bare", None, "mlp-fp32"), ("fabric", None, "mlp-fp32"), ("fabric", None, "mlp-int8")]  # fmt: skip
    targets = [t for t in targets if args.only is None or t[0] in args.only]
    rows = []
    for kind, _, model in targets:
        port = free_port()
        process = (fabric_server(dirs[model], port, folder / f"capture-{model}") if kind == "fabric"
                   else reference_server(kind, dirs[model], port))  # fmt: skip
        try:
            run_open_loop(port, payload, 500, 2, process.pid)  # warm-up
            closed = closed_loop(port, payload, args.seconds, process.pid)
            for rate in args.rates:
                row = {"server": kind, "model": model, **run_open_loop(port, payload, rate, args.seconds, process.pid)}
                row["closed_loop_rps"] = closed["rps"] if closed else None
                rows.append(row)
                print(f"# {kind} {model} {rate:g} rps p99 {row['p99_ms']:.3f} ms errors {row['errors']} "
                      f"(generator send lag p99 {row['send_lag_p99_ms']:.3f} ms)", file=sys.stderr)
        finally:
            process.kill()
            process.wait()
    swaps = None if args.no_swaps else swaps_under_load(dirs, payload, max(args.seconds, 20.0))  # 10 swaps, then a canary step

    header = (f"{'server':<9} {'model':<12} {'rps':>5} {'p50':>7} {'p95':>7} {'p99':>7} {'max':>8} {'errors':>6} "
              f"{'gen lag p99':>11} {'closed-loop rps':>15}")  # fmt: skip
    print(header)
    for r in rows:
        closed_rps = f"{r['closed_loop_rps']:.0f}" if r["closed_loop_rps"] else "(no wrk)"
        print(f"{r['server']:<9} {r['model']:<12} {r['rate']:>5.0f} {r['p50_ms']:>7.3f} {r['p95_ms']:>7.3f} {r['p99_ms']:>7.3f} "
              f"{r['max_ms']:>8.2f} {r['errors']:>6} {r['send_lag_p99_ms']:>11.3f} {closed_rps:>15}")  # fmt: skip

    def find(server: str, model: str, key: str, rate: float = 1000) -> Any:
        return next((r[key] for r in rows if (r["server"], r["model"], r["rate"]) == (server, model, rate)), None)

    fabric_p99, bare_p99 = find("fabric", "lgb200-fp32", "p99_ms"), find("bare", "lgb200-fp32", "p99_ms")
    ratio = fabric_p99 / bare_p99 if fabric_p99 and bare_p99 else None
    constant_p99 = find("constant", "lgb200-fp32", "p99_ms")
    fabric_closed = next((r["closed_loop_rps"] for r in rows if r["server"] == "fabric" and r["model"] == "lgb200-fp32"), None)
    bare_closed = next((r["closed_loop_rps"] for r in rows if r["server"] == "bare" and r["model"] == "lgb200-fp32"), None)
    sizes = info["sizes"]
    verdicts = {
        "realtime": args.realtime,
        "constant_p99_ms_at_1000": constant_p99,
        "generator_floor_under_1ms": None if constant_p99 is None else constant_p99 < 1.0,
        "p99_ratio_vs_bare_at_1000": None if ratio is None else round(ratio, 3),
        "p99_within_1.7x_bare": None if ratio is None else ratio <= 1.7,
        "closed_loop_rps_fabric_lgb": fabric_closed,
        "closed_loop_rps_bare_lgb": bare_closed,
        "closed_loop_at_least_10k": None if fabric_closed is None else fabric_closed >= 10_000,
        "zero_errors": all(r["errors"] == 0 for r in rows),
        "int8_mlp_size_ratio": round(sizes["mlp-int8"] / sizes["mlp-fp32"], 3),
    }
    if swaps is not None:
        verdicts |= {
            "swaps_and_canary_failed_requests": swaps["load"]["errors"],
            "canary_rolled_back": swaps.get("canary", {}).get("outcome") == "rolled_back",
            "registry_to_live_s": swaps["registry_to_live_s"],
        }
        print(f"swaps+canary at 1000 rps: {swaps['load']['errors']} failed of {swaps['load']['requests']}, "
              f"p99 {swaps['load']['p99_ms']:.3f} ms; canary {swaps.get('canary')}; registry-to-live {swaps['registry_to_live_s']} s")
    print(json.dumps(verdicts))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"rows": rows, "swaps": swaps, "sizes": sizes, "verdicts": verdicts}, indent=2))
    print(f"wrote {args.out}")
    shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    main()
