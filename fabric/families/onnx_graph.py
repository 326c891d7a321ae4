"""Shaping converter output into the graph contract: input `input`, output `score` [N]; and a float64
tree-ensemble graph for families whose native predictions are double sums."""

from __future__ import annotations

import onnx
import numpy as np
from onnx import TensorProto, helper, numpy_helper

ML_OPSET_DOUBLE_TREES = 5  # ai.onnx.ml TreeEnsemble: float64 thresholds, leaves and output


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


def double_tree_graph(
    n_features: int,
    roots: list[int],
    features: list[int],
    splits: list[float],
    missing_true: list[int],
    true_branch: tuple[list[int], list[int]],
    false_branch: tuple[list[int], list[int]],
    leaves: list[float],
    constant: float = 0.0,
) -> bytes:
    """`score` float64 [N] = constant + the sum over trees of one TreeEnsemble (ai.onnx.ml opset 5), every
    split `x <= threshold` in float64 on the float32 input cast to float64.

    Node arrays describe split nodes only; a branch points at a node, or at a leaf where its leaf flag
    is 1; `missing_true` sends a NaN down the true (`<=`) branch."""
    ensemble = helper.make_node(
        "TreeEnsemble", ["input_double"], ["tree_sum"], domain="ai.onnx.ml",
        n_targets=1, aggregate_function=1, post_transform=0, tree_roots=roots,
        nodes_featureids=features,
        nodes_splits=numpy_helper.from_array(np.asarray(splits, dtype=np.float64)),
        nodes_modes=numpy_helper.from_array(np.zeros(len(features), dtype=np.uint8)),  # 0: BRANCH_LEQ
        nodes_missing_value_tracks_true=missing_true,
        nodes_truenodeids=true_branch[0], nodes_trueleafs=true_branch[1],
        nodes_falsenodeids=false_branch[0], nodes_falseleafs=false_branch[1],
        leaf_targetids=[0] * len(leaves),
        leaf_weights=numpy_helper.from_array(np.asarray(leaves, dtype=np.float64)),
    )  # fmt: skip
    nodes = [
        helper.make_node("Cast", ["input"], ["input_double"], to=TensorProto.DOUBLE),
        ensemble,
        helper.make_node("Reshape", ["tree_sum", "score_shape"], ["score_sum"]),
        helper.make_node("Add", ["score_sum", "score_constant"], ["score"]),
    ]
    initializers = [
        numpy_helper.from_array(np.array([-1], dtype=np.int64), "score_shape"),
        numpy_helper.from_array(np.array(constant, dtype=np.float64), "score_constant"),
    ]
    graph = helper.make_graph(
        nodes, "trees_float64", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", n_features])],
        [helper.make_tensor_value_info("score", TensorProto.DOUBLE, ["N"])], initializers,
    )  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 15),
                                                    helper.make_opsetid("ai.onnx.ml", ML_OPSET_DOUBLE_TREES)])  # fmt: skip
    model.ir_version = 10  # the IR of ONNX 1.16, where TreeEnsemble appeared; read by ONNX Runtime >= 1.20
    onnx.checker.check_model(model)
    return model.SerializeToString()
