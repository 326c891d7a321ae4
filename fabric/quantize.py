"""Quantize a trained model's ONNX graph and keep the best precision that passes the quality gate.

- fp32: the exported graph itself (always a candidate, the fallback).
- int8: ONNX Runtime dynamic quantization of the weights of MatMul/Gemm (activations are quantized
  per call, so no calibration sample is needed and none can go stale).
- int4: weight-only MatMulNBits (block-wise, ONNX Runtime contrib op). It quantizes MatMul only, so
  Gemm nodes (torch's Linear) are first rewritten as MatMul + Add, which is the same arithmetic.

Tree ensembles are a different kind of graph: TreeEnsemble ops compare features with thresholds and
have no integer kernels, so neither precision applies; the result says so instead of pretending.

The gate: a precision whose test metric is worse than fp32's by more than `quantize.max_metric_drop`
is rejected with a message. Of the accepted ones, the smallest file within the latency budget is
served (size is what quantization buys: memory per replica and transfer at deploy time).
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fabric.data.dataset import Dataset
from fabric.families.trees import validation_metric
from fabric.latency import measure, predict
from fabric.spec import PipelineSpec

WEIGHT_OPS = {"MatMul", "Gemm"}
INT4_BLOCK = 32


@dataclass(frozen=True)
class PrecisionResult:
    precision: str
    status: str  # accepted | rejected | not_applicable
    message: str
    size_bytes: int | None = None
    metric: float | None = None
    drop: float | None = None
    p99_ms: float | None = None
    onnx: bytes | None = field(default=None, repr=False)

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "onnx"}


@dataclass(frozen=True)
class QuantizeResult:
    metric: str
    max_drop: float
    results: list[PrecisionResult]
    chosen: str

    @property
    def chosen_result(self) -> PrecisionResult:
        return next(r for r in self.results if r.precision == self.chosen)

    def accepted(self) -> list[PrecisionResult]:
        return [r for r in self.results if r.status == "accepted"]

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "max_metric_drop": self.max_drop,
            "chosen": self.chosen,
            "precisions": [r.to_dict() for r in self.results],
        }


def _op_types(onnx_bytes: bytes) -> set[str]:
    import onnx

    return {node.op_type for node in onnx.load_from_string(onnx_bytes).graph.node}


def not_applicable_reason(onnx_bytes: bytes, precision: str) -> str | None:
    ops = _op_types(onnx_bytes)
    if any(op.startswith("TreeEnsemble") for op in ops):
        return (
            f"{precision} does not apply to a tree-ensemble graph: TreeEnsemble ops compare features with "
            "thresholds and have no integer kernels in ONNX Runtime; fp32 is kept"
        )
    if not ops & WEIGHT_OPS:
        return f"{precision} does not apply: the graph has no MatMul or Gemm weights to quantize"
    return None


def quantize_int8(onnx_bytes: bytes) -> bytes:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as tmp, _quiet_root_logger():
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(onnx_bytes)
        quantize_dynamic(source, target, weight_type=QuantType.QInt8, op_types_to_quantize=sorted(WEIGHT_OPS))
        return target.read_bytes()


@contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """ONNX Runtime's quantizer advises pre-processing through the root logger on every call."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        yield
    finally:
        root.setLevel(level)


def gemm_to_matmul(onnx_bytes: bytes) -> bytes:
    """Rewrite Gemm(A, B, C) with constant B as MatMul(A, B') + C, so weight-only quantizers that
    handle MatMul see every dense layer."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load_from_string(onnx_bytes)
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        plain = attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0 and not attrs.get("transA", 0)
        if node.op_type != "Gemm" or node.input[1] not in weights or not plain:
            nodes.append(node)
            continue
        b = numpy_helper.to_array(weights[node.input[1]])
        if attrs.get("transB", 0):
            b = b.T
        name = f"{node.input[1]}_matmul"
        graph.initializer.append(numpy_helper.from_array(np.ascontiguousarray(b), name))
        product = f"{node.output[0]}_product" if len(node.input) > 2 else node.output[0]
        nodes.append(helper.make_node("MatMul", [node.input[0], name], [product], name=f"{node.name}_matmul"))
        if len(node.input) > 2:
            nodes.append(helper.make_node("Add", [product, node.input[2]], [node.output[0]], name=f"{node.name}_add"))
    del graph.node[:]
    graph.node.extend(nodes)
    used = {i for n in graph.node for i in n.input}
    keep = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def quantize_int4(onnx_bytes: bytes) -> bytes:
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    model = onnx.load_from_string(gemm_to_matmul(onnx_bytes))
    quantizer = MatMulNBitsQuantizer(model, bits=4, block_size=INT4_BLOCK, is_symmetric=True)
    quantizer.process()
    out = quantizer.model.model
    if not any(node.op_type == "MatMulNBits" for node in out.graph.node):
        raise ValueError("no MatMul weight was eligible for 4-bit blocks")
    return out.SerializeToString()


QUANTIZERS = {"int8": quantize_int8, "int4": quantize_int4}


def _drop(spec: PipelineSpec, reference: float, value: float) -> float:
    return reference - value if spec.higher_is_better else value - reference


def quantize(spec: PipelineSpec, dataset: Dataset, fp32_onnx: bytes, fp32_p99_ms: float) -> QuantizeResult:
    """One result per precision the spec asks for (fp32 always included as the fallback)."""
    y, X = dataset.test.y, dataset.test.X
    reference = validation_metric(spec.metric, y, predict(fp32_onnx, X))
    limit = spec.quantize.max_metric_drop
    results = [
        PrecisionResult("fp32", "accepted", "the exported model", len(fp32_onnx), round(reference, 6), 0.0,
                        fp32_p99_ms, fp32_onnx)  # fmt: skip
    ]
    for precision in [p for p in spec.quantize.precisions if p != "fp32"]:
        reason = not_applicable_reason(fp32_onnx, precision)
        if reason is not None:
            results.append(PrecisionResult(precision, "not_applicable", reason))
            continue
        try:
            quantized = QUANTIZERS[precision](fp32_onnx)
            value = validation_metric(spec.metric, y, predict(quantized, X))
        except Exception as exc:  # noqa: BLE001 - a runtime that cannot run this graph: say so, keep fp32
            results.append(PrecisionResult(precision, "not_applicable", f"{precision} is not supported for this graph: {exc}"))
            continue
        drop = _drop(spec, reference, value)
        p99 = measure(quantized, dataset.validation.X[:256]).p99_ms
        size = len(quantized)
        if not np.isfinite(value) or drop > limit:
            status = "rejected"
            message = (
                f"{precision} loses {drop:.5f} {spec.metric} (> quantize.max_metric_drop={limit}); "
                "kept the better model. Raise the limit to accept it"
            )
        elif p99 > spec.latency_budget.p99_ms:
            status, message = "rejected", f"{precision} p99 {p99:.4f} ms > latency_budget.p99_ms={spec.latency_budget.p99_ms}"
        else:
            status = "accepted"
            message = f"{precision}: {size / len(fp32_onnx):.2f}x the fp32 size, {spec.metric} drop {drop:.5f} <= {limit}"
        results.append(PrecisionResult(precision, status, message, size, round(value, 6), round(drop, 6), p99, quantized))
    chosen = min((r for r in results if r.status == "accepted"), key=lambda r: r.size_bytes or 0)
    return QuantizeResult(spec.metric, limit, results, chosen.precision)
