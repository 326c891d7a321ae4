"""Validate manifests against the Kubernetes OpenAPI schemas of a release (kubernetes-validate, strict:
unknown fields are errors) and HTTPRoute against the Gateway API CRD's schema (tests/schemas/)."""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
from kubernetes_validate.utils import latest_version

SCHEMAS = Path(__file__).parent / "schemas"
NEWEST = ".".join(latest_version().split(".")[:2])  # the newest release kubernetes-validate ships
CRDS = {("gateway.networking.k8s.io/v1", "HTTPRoute"): "httproute-gateway.networking.k8s.io-v1.json"}


def _strict(schema: Any) -> Any:
    """Structural CRD schemas prune unknown fields silently; a test should call them errors."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if "properties" in out and "additionalProperties" not in out and not out.get("x-kubernetes-preserve-unknown-fields"):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@cache
def crd_schema(file_name: str) -> dict[str, Any]:
    schema = _strict(json.loads((SCHEMAS / file_name).read_text()))
    schema["properties"]["metadata"] = {"type": "object"}  # ObjectMeta is checked by the core schema's rules
    schema.setdefault("required", [])
    schema["required"] = sorted({*schema["required"], "apiVersion", "kind", "metadata", "spec"})
    return schema


def validate(manifest: dict[str, Any], version: str = NEWEST) -> None:
    """Raise jsonschema.ValidationError (or kubernetes_validate's) when `manifest` is not valid."""
    manifest = copy.deepcopy(manifest)
    crd = CRDS.get((manifest.get("apiVersion"), manifest.get("kind")))
    if crd is not None:
        jsonschema.Draft202012Validator(crd_schema(crd)).validate(manifest)
        return
    kubernetes_validate.validate(manifest, version, strict=True)
