"""Drift on SageMaker: read the endpoint's data capture from S3, score windows with the same
detector as the local backend, publish the score as a CloudWatch metric with an alarm, and start
the retraining pipeline on an alarm."""

from __future__ import annotations

import base64
import json
from typing import Any

import numpy as np

from fabric.backends.sagemaker import names
from fabric.backends.sagemaker.aws import Clients, aws_errors
from fabric.monitor.detect import PersistenceTracker, score_window
from fabric.monitor.profile import PREDICTION, Profile
from fabric.spec import PipelineSpec


def parse_capture(text: str) -> tuple[list[dict[str, Any]], int]:
    """SageMaker capture JSONL (`captureData.endpointInput/endpointOutput`, base64 or plain) into
    rows of features + prediction; unreadable lines are counted."""
    rows, bad = [], 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)["captureData"]
            payloads = []
            for side in ("endpointInput", "endpointOutput"):
                part = record[side]
                data = part["data"]
                payloads.append(json.loads(base64.b64decode(data) if part.get("encoding") == "BASE64" else data))
            request, response = payloads
            records = request.get("records", request) if isinstance(request, dict) else request
            for features, score in zip(records, response["predictions"], strict=True):
                rows.append({**features, PREDICTION: float(score)})
        except (KeyError, ValueError, TypeError):
            bad += 1
    return rows, bad


def read_capture(clients: Clients, stack: str, use_case: str) -> tuple[list[dict[str, Any]], int]:
    bucket, prefix = names.bucket(stack), names.capture_prefix(use_case)
    rows, bad = [], 0
    with aws_errors(f"read capture s3://{bucket}/{prefix}"):
        pages = clients.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        for key in sorted(o["Key"] for page in pages for o in page.get("Contents", [])):
            body = clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read().decode()
            more, skipped = parse_capture(body)
            rows += more
            bad += skipped
    return rows, bad


def score_capture(spec: PipelineSpec, profile: Profile, rows: list[dict[str, Any]]) -> list[Any]:
    tracker = PersistenceTracker(spec.drift.persistence)
    verdicts = []
    size = spec.drift.window_rows
    for start in range(0, len(rows) - size + 1, size):
        window = rows[start : start + size]
        columns = {}
        for column in [*profile.numeric, *profile.categorical]:
            values = [r.get(column) for r in window]
            columns[column] = np.array([np.nan if v is None else v for v in values], dtype=np.float64 if column in profile.numeric else object)
        verdicts.append(tracker.update(score_window(profile, columns, spec.drift.threshold_sigma, spec.drift.min_effect)))
    return verdicts


def publish(clients: Clients, stack: str, use_case: str, sigma: float, threshold: float) -> None:
    endpoint = names.endpoint(stack, use_case)
    with aws_errors(f"drift metric of {endpoint}"):
        clients.cloudwatch.put_metric_data(Namespace=names.METRIC_NAMESPACE, MetricData=[
            {"MetricName": "DriftSigma", "Dimensions": [{"Name": "Endpoint", "Value": endpoint}], "Value": float(sigma)}])  # fmt: skip
        clients.cloudwatch.put_metric_alarm(**names.drift_alarm_request(stack, use_case, threshold))  # idempotent: same name
