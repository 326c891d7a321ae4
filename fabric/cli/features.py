"""`fabric features apply|materialize|get|skew`: a spec's feature tables in a stack's feature store."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from fabric.cli._common import echo_json, json_option, stack_option

spec_argument = click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
online_option = click.option(
    "--online-url",
    envvar="FABRIC_FEATURES_ONLINE_URL",
    default=None,
    help="Online store: sqlite:///path, postgresql://user@host:port/db or sagemaker://prefix "
    "(env FABRIC_FEATURES_ONLINE_URL; default: SQLite under the stack's home on the local backend).",
)


def _open(spec_path: Path, stack: str, online_url: str | None = None, need_online: bool = False):  # noqa: ANN202
    """(spec, feature set, store) for SPEC in STACK."""
    from fabric.errors import SpecError
    from fabric.features.definitions import load_feature_set
    from fabric.features.online import open_online_store
    from fabric.features.store import FeatureStore, features_home
    from fabric.registry import fabric_home
    from fabric.spec import load_pipeline, load_stack

    spec = load_pipeline(spec_path)
    settings = load_stack(stack)
    if spec.features is None:
        raise SpecError(f"{spec_path}: has no `features:` section; add one (see docs/features.md)")
    features = load_feature_set(spec)
    home = features_home(fabric_home() / stack)
    online = None
    if need_online:
        if online_url is None and settings.backend == "kubernetes":
            raise SpecError(
                f"--stack {stack}: backend kubernetes keeps online features in PostgreSQL; pass --online-url "
                "postgresql://user@host:port/db or set FABRIC_FEATURES_ONLINE_URL"
            )
        if online_url is None and settings.backend == "sagemaker":
            online_url = f"sagemaker://fabric-{stack}?region={settings.region}"  # the groups infra names fabric-<stack>-<table>
        online = open_online_store(online_url or f"sqlite:///{home / 'online.db'}")
    return spec, features, FeatureStore(home, online)


@click.group("features")
def features() -> None:
    """Feature tables of a spec (its `features:` section): apply the definitions, materialise them
    offline and online, look entities up, check train/serve skew."""


@features.command("apply")
@spec_argument
@stack_option
@json_option
def apply(spec_path: Path, stack: str, as_json: bool) -> None:
    """Record SPEC's feature definitions in the stack's catalog. A table whose definition changed
    under the same version is refused (exit 2): give it a new version."""
    _, feature_set, store = _open(spec_path, stack)
    applied = store.apply(feature_set)
    if as_json:
        echo_json([a.__dict__ for a in applied])
        return
    for a in applied:
        click.echo(f"{a.table}:v{a.version}  {a.status:<9}  {a.hash}")


@features.command("materialize")
@spec_argument
@stack_option
@click.option("--end", default=None, help="Snapshot the latest values stamped at or before this ISO 8601 time (default: all).")
@click.option("--refresh", is_flag=True, help="Recompute the tables from their sources even if unchanged.")
@online_option
@json_option
def materialize(spec_path: Path, stack: str, end: str | None, refresh: bool, online_url: str | None, as_json: bool) -> None:
    """Compute SPEC's feature tables into the offline store (once per definition and source) and
    write each entity's latest values into the online store.

    \b
    Examples:
      fabric features materialize pipelines/fraud-features.yaml
      fabric features materialize pipelines/fraud-features.yaml --end 2026-03-01T00:00:00Z --json
    """
    from fabric.features.values import parse_time

    end_ns = None if end is None else parse_time(end, "--end")
    spec, feature_set, store = _open(spec_path, stack, online_url, need_online=True)
    report = store.materialize(feature_set, spec.data, end=end_ns, refresh=refresh)
    if as_json:
        echo_json({"online": store.online.url, "tables": [r.__dict__ for r in report]})
        return
    for r in report:
        how = "computed" if r.computed else "reused"
        rejected = f", {sum(v['count'] for v in r.rejected.values())} rows rejected" if r.rejected else ""
        click.echo(f"{r.table}:v{r.version}  offline {r.offline_rows} rows ({how}{rejected})  online {r.online_rows} entities")
    click.echo(f"online store: {store.online.url}")


@features.command("get")
@spec_argument
@click.argument("entity_ids", metavar="ENTITY_ID...", nargs=-1, required=True)
@stack_option
@click.option("--at", default=None, help="The lookup time, ISO 8601 (default: now); ttl is measured from it.")
@online_option
@json_option
def get(spec_path: Path, entity_ids: tuple[str, ...], stack: str, at: str | None, online_url: str | None, as_json: bool) -> None:
    """Look ENTITY_IDs up in the online store, as the model server does. Exits 1 when an id is
    unknown and the spec's on_unknown policy is `reject` (the server answers 404)."""
    from fabric.features.online import OnlineFeatures
    from fabric.features.values import NO_TIME, ns_to_text, parse_time

    at_ns = parse_time(at, "--at")
    _, feature_set, store = _open(spec_path, stack, online_url, need_online=True)
    online = OnlineFeatures(store.online, feature_set)
    detail = online.lookup_detail(list(entity_ids), at_ns)
    _, missing = online.lookup(list(entity_ids), at_ns)
    rows: list[dict[str, Any]] = []
    for i, entity in enumerate(entity_ids):
        rows.append(
            {
                "entity_id": entity,
                "known": bool(detail.known[i]),
                "values": {n: (None if v != v else v) for n, v in zip(online.names, detail.rows[i].tolist(), strict=True)},
                "stamped": {t: (None if s[i] == NO_TIME else ns_to_text(int(s[i]))) for t, s in detail.stamped.items()},
            }
        )
    payload = {"entity": feature_set.entity, "at": ns_to_text(at_ns), "on_unknown": feature_set.on_unknown, "rows": rows, "missing": missing}
    if as_json:
        echo_json(payload)
    else:
        for row in rows:
            state = "" if row["known"] else ("  unknown: rejected (404)" if row["entity_id"] in missing else "  unknown: defaults")
            click.echo(f"{feature_set.entity}={row['entity_id']}{state}")
            for name, value in row["values"].items():
                click.echo(f"    {name:<24} {value}")
    if missing:
        sys.exit(1)


@features.command("skew")
@spec_argument
@click.option("--capture", "capture", required=True, type=click.Path(path_type=Path), help="The server's capture log (JSON lines with `feature_lookup`).")
@stack_option
@click.option("--sample", type=int, default=None, help="Requests to compare (default: the spec's features.skew.sample).")
@json_option
def skew(spec_path: Path, capture: Path, stack: str, sample: int | None, as_json: bool) -> None:
    """Compare the features served online (from a capture log) with what the offline store gives
    for the same entity and time. Writes the report under the stack's home for the drift monitor
    and exits 1 when the mismatch rate is above features.skew.max_mismatch_rate."""
    import json

    from fabric.errors import FabricError
    from fabric.features.skew import read_capture, skew_check
    from fabric.registry import now

    if sample is not None and sample <= 0:
        raise FabricError(f"--sample={sample} must be > 0")
    spec, feature_set, store = _open(spec_path, stack)
    store.apply(feature_set)
    records = read_capture(capture)
    tables = [store.offline_table(t, spec.data)[0] for t in feature_set.tables]
    settings = feature_set.skew
    report = skew_check(
        feature_set, tables, records,
        sample=sample or settings["sample"], tolerance=settings["tolerance"], max_mismatch_rate=settings["max_mismatch_rate"],
    )  # fmt: skip
    folder = store.root / "skew"
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{spec.name}-{now().replace(':', '')}.json"
    out.write_text(json.dumps({"spec": spec.name, "capture": str(capture), **report.to_dict()}, indent=2))
    if as_json:
        echo_json({**report.to_dict(), "report": str(out)})
    else:
        verdict = "ALARM" if report.alarm else "ok"
        click.echo(
            f"{verdict}: {report.mismatched} of {report.checked} served requests differ from the offline store "
            f"(rate {report.mismatch_rate:.4f}, alarm above {report.max_mismatch_rate}); {report.records} read"
        )
        for name, count in report.per_feature.items():
            if count:
                click.echo(f"    {name:<24} {count} mismatched")
        click.echo(f"report: {out}")
    if report.alarm:
        sys.exit(1)
