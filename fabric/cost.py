"""The cost ledger: every run records what it used (instance type, count, seconds, capacity type)
and an estimated cost from a dated price table (fabric/prices.yaml, overridable per stack), so
`fabric cost` can show spend per run, per model version and per stack, and what spot capacity and
quantization saved.

Local runs are recorded as they ran (on this machine, at no charge) *and* as the stack's training
pool would have run them, which is the number a platform team plans with.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from fabric.errors import FabricError
from fabric.registry import now
from fabric.spec import PipelineSpec, StackSettings

TABLE = Path(__file__).with_name("prices.yaml")


@dataclass(frozen=True)
class Price:
    on_demand: float
    spot: float | None


def price_table(settings: StackSettings) -> tuple[str, dict[str, Price]]:
    raw = yaml.safe_load(TABLE.read_text())
    prices = {k: Price(v["onDemand"], v.get("spot")) for k, v in raw["prices"].items()}
    prices.update({k: Price(v.on_demand, v.spot) for k, v in settings.prices.items()})
    return str(raw["as_of"]), prices


@dataclass(frozen=True)
class LedgerEntry:
    at: str
    stack: str
    model: str
    kind: str  # run | retrain
    seconds: float
    ran_on: str  # where it really ran: local, or an instance type
    instance_type: str  # the stack's pool it is priced on
    capacity_type: str
    count: int
    usd: float
    usd_on_demand: float  # the same time without spot capacity
    prices_as_of: str
    served_precision: str = "fp32"
    served_bytes: int | None = None
    fp32_bytes: int | None = None


def estimate(settings: StackSettings, spec: PipelineSpec, seconds: float) -> dict[str, Any]:
    as_of, prices = price_table(settings)
    instance, capacity = settings.training_capacity(spec.train.accelerator)
    if instance not in prices:
        raise FabricError(
            f"no price for {instance} in fabric/prices.yaml; add fabric:prices.{instance}: {{onDemand: <USD/h>, spot: <USD/h>}} "
            f"to stacks/Pulumi.{settings.env}.yaml"
        )
    price = prices[instance]
    hourly = price.spot if capacity == "SPOT" and price.spot is not None else price.on_demand
    return {"instance_type": instance, "capacity_type": capacity, "count": 1, "usd": round(hourly * seconds / 3600, 6),
            "usd_on_demand": round(price.on_demand * seconds / 3600, 6), "prices_as_of": as_of}  # fmt: skip


def ledger_path(home: Path) -> Path:
    return home / "cost" / "ledger.jsonl"


def record(home: Path, entry: LedgerEntry) -> None:
    path = ledger_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps(asdict(entry)) + "\n")


def record_run(home: Path, settings: StackSettings, spec: PipelineSpec, result: Any, kind: str = "run") -> LedgerEntry:
    """After a successful run: its compute seconds (search, train, quantize) priced on the stack."""
    seconds = sum(v for k, v in result.timings_s.items() if k in ("data", "search", "train", "quantize"))
    version = result.version
    table = version.metrics.get("quantize", {})
    sizes = {p["precision"]: p.get("size_bytes") for p in table.get("precisions", [])}
    entry = LedgerEntry(
        at=now(), stack=settings.env, model=version.address, kind=kind, seconds=round(seconds, 2), ran_on="local",
        served_precision=table.get("chosen", "fp32"), served_bytes=sizes.get(table.get("chosen", "fp32")),
        fp32_bytes=sizes.get("fp32"), **estimate(settings, spec, seconds),
    )  # fmt: skip
    record(home, entry)
    return entry


def read_ledger(home: Path) -> list[dict[str, Any]]:
    path = ledger_path(home)
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def summarize(entries: list[dict[str, Any]], by: str) -> list[dict[str, Any]]:
    """Totals per run, per model name/version, or per stack, with spot savings."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for e in entries:
        key = {"run": f"{e['at']} {e['model']}", "version": e["model"], "model": e["model"].split(":")[0],
               "stack": e["stack"]}[by]  # fmt: skip
        groups[key].append(e)
    rows = []
    for key, items in groups.items():
        usd = sum(e["usd"] for e in items)
        on_demand = sum(e["usd_on_demand"] for e in items)
        last = items[-1]
        shrink = (last["served_bytes"] / last["fp32_bytes"]) if last.get("served_bytes") and last.get("fp32_bytes") else None
        rows.append({by: key, "runs": len(items), "seconds": round(sum(e["seconds"] for e in items), 1),
                     "usd": round(usd, 4), "usd_on_demand": round(on_demand, 4), "spot_savings_usd": round(on_demand - usd, 4),
                     "instance_type": last["instance_type"], "capacity_type": last["capacity_type"],
                     "served_precision": last.get("served_precision"),
                     "model_size_vs_fp32": None if shrink is None else round(shrink, 3)})  # fmt: skip
    return rows
