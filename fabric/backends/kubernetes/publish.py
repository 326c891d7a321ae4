"""Copy a registered version's artifacts to the registry's bucket (s3://bucket[/prefix]) as
`<prefix>/<stack>/<name>/<version>/<file>`, each object with its SHA-256 as metadata.

boto3 takes credentials from the pod (IRSA, instance profile, env) and honours AWS_ENDPOINT_URL
(e.g. MinIO on a self-hosted cluster)."""

from __future__ import annotations

import hashlib
from pathlib import Path

from fabric._imports import require
from fabric.errors import FabricError
from fabric.registry import ModelVersion


def split_bucket(url: str) -> tuple[str, str]:
    if not url.startswith("s3://"):
        raise FabricError(f"fabric:kubernetes.registryBucket={url} must be s3://<bucket>[/<prefix>]")
    bucket, _, prefix = url.removeprefix("s3://").partition("/")
    return bucket, prefix.strip("/")


def publish(version: ModelVersion, bucket_url: str, stack: str) -> list[str]:
    boto3 = require("boto3")
    bucket, prefix = split_bucket(bucket_url)
    base = "/".join(p for p in (prefix, stack, version.name, str(version.version)) if p)
    s3 = boto3.client("s3")
    uploaded = []
    for path in sorted(Path(version.path).rglob("*")):
        if not path.is_file():
            continue
        key = f"{base}/{path.relative_to(version.path).as_posix()}"
        body = path.read_bytes()
        try:
            s3.put_object(Bucket=bucket, Key=key, Body=body, Metadata={"sha256": hashlib.sha256(body).hexdigest()})
        except Exception as exc:  # botocore's errors: no credentials, no bucket, denied
            raise FabricError(f"fabric:kubernetes.registryBucket={bucket_url}: cannot write {key} ({exc})") from None
        uploaded.append(f"s3://{bucket}/{key}")
    return uploaded
