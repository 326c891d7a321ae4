"""Feature definitions: declared once, in the spec or in a Python module the spec names, and used
unchanged by the training join, materialisation, serving lookups and the skew check.

A definition's hash covers what changes the values: key, event time, source, transformation (its
code), ttl, types and defaults; not descriptions. Each (table, version) keeps its hash forever in
the stack's catalog, so changing a definition needs a new version.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import importlib.util
import inspect
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from fabric.errors import SpecError
from fabric.spec import FeatureTableSpec, PipelineSpec, duration_seconds, format_validation_error

if TYPE_CHECKING:
    import pandas as pd

Transformation = Callable[["pd.DataFrame"], "pd.DataFrame"]
NS = 1_000_000_000


@dataclass(frozen=True)
class Feature:
    """One numeric feature. `ttl` overrides the table's; `default` fills a missing or expired value."""

    name: str
    type: str = "float"  # float | int | bool
    ttl: str | None = None
    default: float | None = None
    description: str = ""


@dataclass(frozen=True)
class FeatureTable:
    """Values of `features` per entity, each row stamped with the time (`event_time`) it became known.

    `transformation` turns the source's rows into the table's rows (entity key, event time, features);
    without one, the source must already have those columns.
    """

    name: str
    features: tuple[Feature, ...]
    version: int = 1
    source: str = "data"
    event_time: str = "event_time"
    transformation: Transformation | None = None
    ttl: str | None = None
    description: str = ""
    key: str = ""  # the entity column; set from the spec's `features.entity`
    # rebuilt from a model's features.json: the definition as recorded (its transformation is not
    # loaded, but its identity still counts in the hash)
    recorded: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        features = tuple(Feature(**f) if isinstance(f, dict) else f for f in self.features)
        object.__setattr__(self, "features", features)

    @property
    def names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def address(self) -> str:
        return f"{self.name}:v{self.version}"

    def ttl_ns(self, feature: Feature) -> int | None:
        text = feature.ttl or self.ttl
        return None if text is None else int(duration_seconds(text) * NS)

    def definition(self) -> dict[str, Any]:
        """Everything that changes the values, in a canonical form."""
        if self.recorded is not None:
            return dict(self.recorded)
        source = self.source
        if ":" not in source.split("/")[0] and source != "data":
            source = Path(source).name  # the file, wherever the project is checked out
        return {
            "name": self.name,
            "version": self.version,
            "key": self.key,
            "event_time": self.event_time,
            "source": source,
            "transformation": _code_identity(self.transformation),
            "ttl": self.ttl,
            "features": [{"name": f.name, "type": f.type, "ttl": f.ttl, "default": f.default} for f in self.features],
        }

    def definition_hash(self) -> str:
        canonical = json.dumps(self.definition(), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class FeatureSet:
    """The feature tables of one spec, all keyed by the same entity column."""

    entity: str
    tables: tuple[FeatureTable, ...]
    on_unknown: str = "reject"
    origin: str = ""  # where they were declared, for messages
    skew: dict[str, Any] = field(default_factory=dict)

    @property
    def names(self) -> list[str]:
        return [n for t in self.tables for n in t.names]

    def versions(self) -> dict[str, str]:
        """table -> `v<version> <hash>`: what lineage records."""
        return {t.name: f"v{t.version} {t.definition_hash()}" for t in self.tables}

    def to_dict(self) -> dict[str, Any]:
        """The serving contract written beside a model (`features.json`)."""
        return {
            "entity": self.entity,
            "on_unknown": self.on_unknown,
            "tables": [
                {**t.definition(), "hash": t.definition_hash(), "description": t.description} for t in self.tables
            ],
        }

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> FeatureSet:
        """Rebuild from `features.json` (enough to look features up; transformations are not needed)."""
        tables = tuple(
            FeatureTable(
                name=t["name"],
                version=t["version"],
                key=raw["entity"],
                event_time=t["event_time"],
                source=t["source"],
                ttl=t["ttl"],
                features=tuple(Feature(f["name"], f["type"], f["ttl"], f["default"]) for f in t["features"]),
                recorded={k: v for k, v in t.items() if k not in ("hash", "description")},
            )
            for t in raw["tables"]
        )
        return cls(entity=raw["entity"], tables=tables, on_unknown=raw.get("on_unknown", "reject"), origin="features.json")


def _code_identity(function: Transformation | None) -> dict[str, str] | None:
    if function is None:
        return None
    name = f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"
    try:
        code = inspect.getsource(function)
    except (OSError, TypeError):
        code = name  # no source to read (a builtin, or defined in a REPL): the name stands in
    return {"function": name.rsplit(".", 1)[-1], "code_sha256": hashlib.sha256(code.encode()).hexdigest()[:32]}


# ---------------------------------------------------------------------------------------------
# From a spec


def _load_file_module(path: Path, field_name: str) -> Any:
    if not path.is_file():
        raise SpecError(f"{field_name}={path}: no such file; fix the path (relative paths start at the spec's folder)")
    name = "fabric_features_" + hashlib.sha256(str(path).encode()).hexdigest()[:12]
    loader_spec = importlib.util.spec_from_file_location(name, path)
    if loader_spec is None or loader_spec.loader is None:
        raise SpecError(f"{field_name}={path}: not a Python module; name a .py file")
    module = importlib.util.module_from_spec(loader_spec)
    sys.modules[name] = module  # dataclasses and inspect.getsource look the module up by name
    try:
        loader_spec.loader.exec_module(module)
    except Exception as exc:  # the user's code: report it as theirs, in one line
        del sys.modules[name]
        raise SpecError(f"{field_name}={path}: importing it failed ({type(exc).__name__}: {exc}); fix the module") from exc
    return module


def resolve_transformation(text: str, field_name: str) -> Transformation:
    module_name, _, function = text.rpartition(":")
    if module_name.endswith(".py"):
        module = _load_file_module(Path(module_name), field_name)
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise SpecError(f"{field_name}={text!r}: cannot import {module_name} ({exc}); check the module path") from None
    found = getattr(module, function, None)
    if not callable(found):
        raise SpecError(f"{field_name}={text!r}: {module_name} has no function {function!r}; check the name")
    return found


def _from_spec(table: FeatureTableSpec, key: str, field_name: str) -> FeatureTable:
    transformation = None
    if table.transformation:
        transformation = resolve_transformation(table.transformation, f"{field_name}.transformation")
    return FeatureTable(
        name=table.name,
        version=table.version,
        source=table.source,
        event_time=table.event_time,
        transformation=transformation,
        ttl=table.ttl,
        description=table.description,
        key=key,
        features=tuple(Feature(f.name, f.type, f.ttl, f.default, f.description) for f in table.features),
    )


def _check_module_table(table: Any, module: str, index: int) -> FeatureTable:
    where = f"{module}: TABLES[{index}]"
    if not isinstance(table, FeatureTable):
        raise SpecError(f"{where} is a {type(table).__name__}; TABLES must hold fabric.features.FeatureTable objects")
    raw = {
        "name": table.name,
        "version": table.version,
        "source": table.source,
        "event_time": table.event_time,
        "ttl": table.ttl,
        "description": table.description,
        "features": [
            {"name": f.name, "type": f.type, "ttl": f.ttl, "default": f.default, "description": f.description}
            if isinstance(f, Feature)
            else f
            for f in table.features
        ],
    }
    try:
        FeatureTableSpec.model_validate(raw)
    except ValidationError as exc:
        raise SpecError(format_validation_error(module, exc, prefix=f"TABLES[{index}].")) from None
    if table.transformation is not None and not callable(table.transformation):
        raise SpecError(f"{where}.transformation is not callable; pass a function DataFrame -> DataFrame")
    return table


def load_feature_set(spec: PipelineSpec) -> FeatureSet:
    """The spec's feature tables, with transformations imported and module tables checked."""
    features = spec.features
    if features is None:
        raise SpecError(f"{spec.name}: the spec has no `features:` section; add one to use feature tables")
    if features.module:
        module = _load_file_module(Path(features.module), "features.module")
        declared = getattr(module, "TABLES", None)
        if not isinstance(declared, list | tuple) or not declared:
            raise SpecError(f"features.module={features.module}: defines no TABLES list; add TABLES = [FeatureTable(...), ...]")
        tables = []
        for i, table in enumerate(declared):
            checked = _check_module_table(table, features.module, i)
            tables.append(dataclasses.replace(checked, key=features.entity))
        origin = features.module
    else:
        tables = [_from_spec(t, features.entity, f"features.tables[{i}]") for i, t in enumerate(features.tables)]
        origin = "features.tables"
    names = [t.name for t in tables]
    columns = [n for t in tables for n in t.names]
    for label, values in (("table names", names), ("feature names", columns)):
        duplicates = sorted({n for n in values if values.count(n) > 1})
        if duplicates:
            raise SpecError(f"{origin}: {label} must be unique across tables; rename {duplicates}")
    return FeatureSet(
        entity=features.entity,
        tables=tuple(tables),
        on_unknown=features.on_unknown,
        origin=origin,
        skew=features.skew.model_dump(),
    )
