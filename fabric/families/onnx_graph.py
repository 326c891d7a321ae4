"""Shaping converter output into the graph contract: input `input`, output `score` [N]."""

from __future__ import annotations

import onnx
from onnx import TensorProto, helper


def finalize(model: onnx.ModelProto, source_output: str, column: int | None) -> bytes:
    """Replace the graph outputs by `score` [N]: column `column` of `source_output` (or all of it,
    flattened, when `column` is None). Unused converter outputs (labels) are dropped."""
    graph = model.graph
    if not any(op.domain in ("", "ai.onnx") for op in model.opset_import):
        model.opset_import.append(helper.make_opsetid("", 15))
    if column is None:
        shape = helper.make_tensor("score_shape", TensorProto.INT64, [1], [-1])
        graph.initializer.append(shape)
        graph.node.append(helper.make_node("Reshape", [source_output, "score_shape"], ["score_raw"]))
    else:
        index = helper.make_tensor("score_column", TensorProto.INT64, [], [column])
        graph.initializer.append(index)
        graph.node.append(helper.make_node("Gather", [source_output, "score_column"], ["score_raw"], axis=1))
    graph.node.append(helper.make_node("Cast", ["score_raw"], ["score"], to=TensorProto.FLOAT))
    del graph.output[:]
    graph.output.append(helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"]))
    _prune_unused(graph)
    onnx.checker.check_model(model)
    return model.SerializeToString()


def _prune_unused(graph: onnx.GraphProto) -> None:
    needed = {o.name for o in graph.output}
    keep = []
    for node in reversed(graph.node):
        if any(out in needed for out in node.output):
            keep.append(node)
            needed.update(node.input)
    del graph.node[:]
    graph.node.extend(reversed(keep))
