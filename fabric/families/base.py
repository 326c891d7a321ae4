"""A model family: how to suggest its hyperparameters, fit it with pruning and a deadline, predict
natively, and export it to ONNX with the project's one graph contract.

Graph contract (every family, every precision): one input `input` float32 [N, F] in schema order,
one output `score` [N] (probability of the positive class, or the regression value): float32, or
float64 where the family's own predictions are double sums that float32 would round (LightGBM
regression; see fabric.families.trees.lightgbm_regression_onnx).
"""

from __future__ import annotations

import abc
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# Called by fit every few rounds/epochs with (step, validation metric, export of the model so far
# to ONNX bytes, for a latency check). It may raise to stop training (pruning, latency, deadline).
Reporter = Callable[[int, float, Callable[[], bytes]], None]


class DeadlineReached(Exception):
    """The search's wall-clock deadline passed while a model was being fitted."""


@dataclass(frozen=True)
class FitData:
    X_train: np.ndarray
    y_train: np.ndarray
    X_valid: np.ndarray
    y_valid: np.ndarray
    task: str  # binary | regression
    categorical_columns: tuple[int, ...]
    categories: tuple[int, ...]  # category count per categorical column
    metric: str
    seed: int = 0
    deadline: float | None = None  # time.monotonic() value
    checkpoint: Any = None  # fabric.checkpoint.Checkpoint: resume a refit from it, and keep it up to date

    def check_deadline(self) -> None:
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise DeadlineReached()


class ModelFamily(abc.ABC):
    """Implementations are stateless; the fitted model object is opaque to the caller."""

    name: str
    #: prefix of the family's Optuna parameter names (one study holds every family's parameters)
    param_prefix: str
    #: the Optuna parameter that scales what a tree learns per round (the pruner compares trials at
    #: equal rounds x learning rate); None where steps do not scale with it (Adam's epochs)
    learning_rate_param: str | None = None
    #: whether each step adds a tree to the served model, so that its ONNX export and its served
    #: latency grow with the steps fitted (an MLP's epochs change its weights, not its size)
    steps_add_trees: bool = False
    #: whether the family can use a GPU (used by cost and policy checks)
    uses_gpu: bool = False

    @abc.abstractmethod
    def suggest(self, trial: Any) -> dict[str, Any]:
        """Hyperparameters for one Optuna trial."""

    @abc.abstractmethod
    def fit(self, params: dict[str, Any], data: FitData, report: Reporter | None = None) -> Any:
        """Fit on the train split, early-stopping on the validation split."""

    @abc.abstractmethod
    def predict(self, model: Any, X: np.ndarray) -> np.ndarray:
        """Scores [N] natively (probability of class 1 for binary)."""

    @abc.abstractmethod
    def to_onnx(self, model: Any, n_features: int) -> bytes:
        """Serialized ONNX model following the graph contract, weights in the one file."""

    def warm_up(self) -> None:
        """Pay one-off import and initialisation costs up front, where the search can account for
        them, instead of inside a trial where they cannot be cut."""

    def feature_importance(self, model: Any, n_features: int) -> np.ndarray | None:
        return None

    def max_steps(self, params: dict[str, Any]) -> int:
        """The most steps (rounds, epochs) a search fit with these params can report."""
        return int(params["max_rounds"])

    def refit_params(self, params: dict[str, Any], model: Any) -> dict[str, Any]:
        """Params for a refit on train+validation (e.g. the early-stopped round count)."""
        return dict(params)
