"""Gradient-boosted trees: LightGBM and XGBoost, trained through their native APIs so that a
callback can report validation progress, honour the deadline and be pruned mid-fit."""

from __future__ import annotations

from typing import Any

import numpy as np

from fabric.families.base import FitData, ModelFamily, Reporter
from fabric.families.onnx_graph import double_tree_graph, finalize

MAX_ROUNDS = 1000
EARLY_STOPPING = 30
REPORT_EVERY = 10
# The spec's metric as LightGBM computes it on a validation set while training (from the scores it
# keeps up to date, one tree at a time); a metric not listed is computed from a fresh prediction.
LIGHTGBM_METRICS = {"rmse": "rmse", "mae": "l1", "roc_auc": "auc", "pr_auc": "average_precision",
                    "log_loss": "binary_logloss"}  # fmt: skip


def roc_auc(y: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney statistic (ties count a half), equal to scikit-learn's.

    The search scores every trial's validation split every few rounds: scikit-learn's argument
    checks made it about 3 ms a call on 2,000 rows, a tenth of a small data set's trial."""
    from scipy.stats import rankdata

    positive = np.asarray(y) == 1
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        raise ValueError("Only one class present in y_true. ROC AUC score is not defined in that case.")
    ranks = rankdata(score)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def validation_metric(metric: str, y: np.ndarray, score: np.ndarray) -> float:
    """The spec's metric on a split, as a plain float; ValueError on a non-finite score, as
    scikit-learn raises."""
    if not np.isfinite(score).all():
        raise ValueError(f"{metric}: the scores contain NaN or infinity")
    if metric == "roc_auc":
        return roc_auc(y, score)
    if metric == "rmse":
        return float(np.sqrt(np.mean((np.asarray(y, dtype=np.float64) - score) ** 2)))
    if metric == "mae":
        return float(np.mean(np.abs(np.asarray(y, dtype=np.float64) - score)))
    from sklearn import metrics

    if metric == "pr_auc":
        return float(metrics.average_precision_score(y, score))
    if metric == "log_loss":
        return float(metrics.log_loss(y, np.clip(score, 1e-7, 1 - 1e-7), labels=[0, 1]))
    if metric == "accuracy":
        return float(metrics.accuracy_score(y, score >= 0.5))
    if metric == "r2":
        return float(metrics.r2_score(y, score))
    raise ValueError(f"unknown metric {metric!r}")


class _Progress:
    """Every REPORT_EVERY rounds: the deadline, then the spec's metric on the validation split
    (`value`, called only when there is a report to make)."""

    def __init__(self, data: FitData, report: Reporter | None, value: Any, export: Any) -> None:
        self.data, self.report, self.value, self.export = data, report, value, export

    def __call__(self, round_: int) -> None:
        self.data.check_deadline()
        if self.report is not None and round_ > 0 and round_ % REPORT_EVERY == 0:
            self.report(round_, self.value(), self.export)


def float32_thresholds(model_text: str) -> str:
    """Round LightGBM's double split thresholds down to float32 values.

    ONNX TreeEnsemble stores thresholds as float32, rounded to nearest; a float32 feature lying
    between the double threshold and its rounded-up float32 would take the other branch. For float32
    inputs `x <= t` holds exactly when `x <= (largest float32 <= t)`, so this rewrite changes no
    LightGBM prediction on float32 data and makes the ONNX graph agree with it bit for bit.
    """
    # tree_sizes gives each tree's byte length for parallel parsing; without it LightGBM reads in order
    lines = [line for line in model_text.split("\n") if not line.startswith("tree_sizes=")]
    for i, line in enumerate(lines):
        if not line.startswith("threshold="):
            continue
        values = np.array(line.removeprefix("threshold=").split(), dtype=np.float64)
        rounded = values.astype(np.float32)
        above = rounded.astype(np.float64) > values
        rounded[above] = np.nextafter(rounded[above], np.float32(-np.inf))
        lines[i] = "threshold=" + " ".join(repr(float(v)) for v in rounded)
    return "\n".join(lines)


def lightgbm_regression_onnx(model: Any, n_features: int) -> bytes | None:
    """A LightGBM regressor as one float64 ai.onnx.ml-5 TreeEnsemble: `score` float64 [N].

    onnxmltools' TreeEnsembleRegressor keeps leaf weights as float32 attributes and ONNX Runtime sums
    its trees in float32, several float32 steps off LightGBM's double sums (2e-4 at targets near 300).
    TreeEnsemble (ai.onnx.ml opset 5) takes float64 thresholds and leaves and answers float64; the
    float32 input is cast to float64, which is what LightGBM does with it, so the graph reproduces
    LightGBM's predictions to the last bits (same splits, same double sums). Missing values follow
    LightGBM: with missing_type NaN a NaN goes the split's default side; with None it is taken as 0.
    None when the model uses anything else (categorical splits, zero-as-missing, averaged outputs):
    the caller then uses the float32 converter.
    """
    dump = model.dump_model(num_iteration=model.best_iteration or None)
    if dump.get("average_output") or dump.get("num_class", 1) != 1:
        return None
    features: list[int] = []
    splits: list[float] = []
    missing_true: list[int] = []
    true_ids: list[int] = []
    true_leaf: list[int] = []
    false_ids: list[int] = []
    false_leaf: list[int] = []
    leaves: list[float] = []
    roots: list[int] = []
    constant = 0.0

    def child(tree: dict[str, Any]) -> tuple[int, int]:
        if "leaf_value" in tree:
            leaves.append(float(tree["leaf_value"]))
            return len(leaves) - 1, 1
        return node(tree), 0

    def node(tree: dict[str, Any]) -> int:
        if tree.get("decision_type") != "<=" or tree.get("missing_type") not in ("None", "NaN"):
            raise ValueError(f"split {tree.get('decision_type')} with missing_type {tree.get('missing_type')}")
        index, threshold = len(features), float(tree["threshold"])
        features.append(int(tree["split_feature"]))
        splits.append(threshold)
        missing_true.append(int(tree["default_left"]) if tree["missing_type"] == "NaN" else int(0.0 <= threshold))
        for reserved in (true_ids, true_leaf, false_ids, false_leaf):  # filled once the children have indices
            reserved.append(0)
        true_ids[index], true_leaf[index] = child(tree["left_child"])
        false_ids[index], false_leaf[index] = child(tree["right_child"])
        return index

    try:
        for tree in dump["tree_info"]:
            if "leaf_value" in tree["tree_structure"]:  # a tree without a split adds a constant
                constant += float(tree["tree_structure"]["leaf_value"])
            else:
                roots.append(node(tree["tree_structure"]))
    except ValueError:
        return None
    if not roots:
        return None
    return double_tree_graph(n_features, roots, features, splits, missing_true, (true_ids, true_leaf),
                             (false_ids, false_leaf), leaves, constant)  # fmt: skip


class LightGBMFamily(ModelFamily):
    name = "lightgbm"
    param_prefix = "lgb_"
    learning_rate_param = "lgb_learning_rate"
    steps_add_trees = True

    def warm_up(self) -> None:
        import lightgbm  # noqa: F401
        import onnxmltools  # noqa: F401

    def suggest(self, trial: Any) -> dict[str, Any]:
        return {
            "learning_rate": trial.suggest_float("lgb_learning_rate", 0.02, 0.3, log=True),
            "num_leaves": trial.suggest_int("lgb_num_leaves", 8, 128, log=True),
            "min_child_samples": trial.suggest_int("lgb_min_child_samples", 5, 200, log=True),
            "feature_fraction": trial.suggest_float("lgb_feature_fraction", 0.5, 1.0),
            "bagging_fraction": trial.suggest_float("lgb_bagging_fraction", 0.5, 1.0),
            "lambda_l2": trial.suggest_float("lgb_lambda_l2", 1e-3, 10.0, log=True),
            "max_rounds": trial.suggest_int("lgb_max_rounds", 50, MAX_ROUNDS, log=True),
        }

    def _params(self, params: dict[str, Any], data: FitData) -> dict[str, Any]:
        objective = "binary" if data.task == "binary" else "regression"
        core = {k: v for k, v in params.items() if k not in ("max_rounds", "rounds")}
        return {**core, "objective": objective, "bagging_freq": 1, "verbose": -1, "seed": data.seed,
                "num_threads": 1, "deterministic": True}  # fmt: skip

    def fit(self, params: dict[str, Any], data: FitData, report: Reporter | None = None) -> Any:
        import lightgbm as lgb

        train = lgb.Dataset(data.X_train, data.y_train, free_raw_data=False)
        rounds = int(params.get("rounds") or params["max_rounds"])
        searching = "rounds" not in params
        # Search: LightGBM scores the validation set as it trains, so the reports read the spec's
        # metric from its evaluation instead of predicting the whole split with every tree again
        # (quadratic in the rounds: ten times the training itself on 8,000 rows). Early stopping
        # still follows the objective's own metric, listed first.
        tracked = LIGHTGBM_METRICS.get(data.metric) if searching else None
        state: dict[str, Any] = {}

        def value() -> float:
            for _, name, result, *_ in state["evaluation"]:
                if name == tracked:
                    return float(result)
            # num_threads: the predictor does not inherit the booster's, and OpenMP threads that
            # wait for busy cores cost more than the prediction itself
            scores = state["booster"].predict(data.X_valid, num_threads=1)
            return validation_metric(data.metric, data.y_valid, scores)

        progress = _Progress(data, report, value, lambda: self.to_onnx(state["booster"], data.X_train.shape[1]))

        def callback(env: Any) -> None:
            state["booster"], state["evaluation"] = env.model, env.evaluation_result_list or []
            progress(env.iteration + 1)

        callbacks = [callback]
        valid_sets = []
        booster_params = self._params(params, data)
        if searching:  # early-stop on validation
            valid_sets = [lgb.Dataset(data.X_valid, data.y_valid, reference=train)]
            own = "binary_logloss" if data.task == "binary" else "l2"
            booster_params["metric"] = list(dict.fromkeys([own, tracked] if tracked else [own]))
            callbacks.append(lgb.early_stopping(EARLY_STOPPING, first_metric_only=True, verbose=False))
        init_model, done = None, 0
        ckpt = data.checkpoint if "rounds" in params else None
        if ckpt is not None:
            done = int(ckpt.progress().get("rounds", 0))
            if done:
                init_model = lgb.Booster(model_file=str(ckpt.path("lightgbm.txt")))
                if done >= rounds:
                    init_model.resumed_from = done
                    return init_model

            def save(env: Any) -> None:
                total = done + env.iteration + 1
                if total % ckpt.every == 0 or total == rounds:
                    ckpt.write("lightgbm.txt", lambda p: env.model.save_model(str(p)))
                    ckpt.note(rounds=total, family="lightgbm")

            callbacks.append(save)
        booster = lgb.train(booster_params, train, rounds - done, valid_sets=valid_sets, callbacks=callbacks,
                            init_model=init_model)  # fmt: skip
        booster.resumed_from = done
        return booster

    def predict(self, model: Any, X: np.ndarray) -> np.ndarray:
        best = model.best_iteration or None
        return np.asarray(model.predict(X, num_iteration=best), dtype=np.float64)

    def to_onnx(self, model: Any, n_features: int) -> bytes:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        binary = model.params.get("objective") == "binary"
        exact = None if binary else lightgbm_regression_onnx(model, n_features)
        if exact is not None:
            return exact
        text = model.model_to_string(num_iteration=model.best_iteration or None)
        model = model.__copy__()
        model.model_from_string(float32_thresholds(text))
        proto = onnxmltools.convert_lightgbm(
            model, initial_types=[("input", FloatTensorType([None, n_features]))], zipmap=False
        )
        return finalize(proto, "probabilities" if binary else "variable", 1 if binary else None)

    def feature_importance(self, model: Any, n_features: int) -> np.ndarray:
        return np.asarray(model.feature_importance(importance_type="gain"), dtype=np.float64)

    def refit_params(self, params: dict[str, Any], model: Any) -> dict[str, Any]:
        return {**params, "rounds": max(1, int(model.best_iteration or model.current_iteration()))}


class XGBoostFamily(ModelFamily):
    name = "xgboost"
    param_prefix = "xgb_"
    learning_rate_param = "xgb_eta"
    steps_add_trees = True

    def warm_up(self) -> None:
        import onnxmltools  # noqa: F401
        import xgboost  # noqa: F401

    def suggest(self, trial: Any) -> dict[str, Any]:
        return {
            "eta": trial.suggest_float("xgb_eta", 0.02, 0.3, log=True),
            "max_depth": trial.suggest_int("xgb_max_depth", 2, 10),
            "min_child_weight": trial.suggest_float("xgb_min_child_weight", 0.5, 50, log=True),
            "subsample": trial.suggest_float("xgb_subsample", 0.5, 1.0),
            "colsample_bytree": trial.suggest_float("xgb_colsample_bytree", 0.5, 1.0),
            "lambda": trial.suggest_float("xgb_lambda", 1e-3, 10.0, log=True),
            "max_rounds": trial.suggest_int("xgb_max_rounds", 50, MAX_ROUNDS, log=True),
        }

    def fit(self, params: dict[str, Any], data: FitData, report: Reporter | None = None) -> Any:
        import xgboost as xgb

        class Callback(xgb.callback.TrainingCallback):
            def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                state["booster"] = model
                progress(epoch + 1)
                return False

        state: dict[str, Any] = {}
        dvalid = xgb.DMatrix(data.X_valid, data.y_valid)
        progress = _Progress(
            data,
            report,
            lambda: validation_metric(data.metric, data.y_valid, state["booster"].predict(
                dvalid, iteration_range=(0, state["booster"].num_boosted_rounds()))),
            lambda: self.to_onnx(state["booster"], data.X_train.shape[1]),
        )
        core = {k: v for k, v in params.items() if k not in ("max_rounds", "rounds")}
        booster_params = {
            **core,
            "objective": "binary:logistic" if data.task == "binary" else "reg:squarederror",
            "eval_metric": "logloss" if data.task == "binary" else "rmse",
            "tree_method": "hist",
            "nthread": 1,
            "seed": data.seed,
        }
        rounds = int(params.get("rounds") or params["max_rounds"])
        searching = "rounds" not in params
        callbacks: list[Any] = [Callback()]
        start, done = None, 0
        ckpt = None if searching else data.checkpoint
        if ckpt is not None:
            done = int(ckpt.progress().get("rounds", 0))
            if done:
                start = xgb.Booster(model_file=str(ckpt.path("xgboost.ubj")))
                if done >= rounds:
                    start.resumed_from = done
                    return start

            class Save(xgb.callback.TrainingCallback):
                def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
                    total = model.num_boosted_rounds()
                    if total % ckpt.every == 0 or total == rounds:
                        ckpt.write("xgboost.ubj", lambda p: model.save_model(str(p)))
                        ckpt.note(rounds=total, family="xgboost")
                    return False

            callbacks.append(Save())
        booster = xgb.train(
            booster_params,
            xgb.DMatrix(data.X_train, data.y_train),
            rounds - done,
            evals=[(dvalid, "valid")] if searching else [],
            early_stopping_rounds=EARLY_STOPPING if searching else None,
            callbacks=callbacks,
            verbose_eval=False,
            xgb_model=start,
        )
        booster.resumed_from = done
        return booster

    def _rounds(self, model: Any) -> int:
        best = getattr(model, "best_iteration", None)
        return int(best) + 1 if best is not None else model.num_boosted_rounds()

    def predict(self, model: Any, X: np.ndarray) -> np.ndarray:
        import xgboost as xgb

        return np.asarray(model.predict(xgb.DMatrix(X), iteration_range=(0, self._rounds(model))), dtype=np.float64)

    def to_onnx(self, model: Any, n_features: int) -> bytes:
        import onnxmltools
        from onnxmltools.convert.common.data_types import FloatTensorType

        rounds = self._rounds(model)
        if rounds < model.num_boosted_rounds():
            model = model[:rounds]
        binary = "binary" in str(model.save_config())
        proto = onnxmltools.convert_xgboost(
            model, initial_types=[("input", FloatTensorType([None, n_features]))]
        )
        return finalize(proto, "probabilities" if binary else "variable", 1 if binary else None)

    def feature_importance(self, model: Any, n_features: int) -> np.ndarray:
        gains = model.get_score(importance_type="total_gain")
        return np.array([gains.get(f"f{i}", 0.0) for i in range(n_features)], dtype=np.float64)

    def refit_params(self, params: dict[str, Any], model: Any) -> dict[str, Any]:
        return {**params, "rounds": self._rounds(model)}
