"""Model families by name. Each is imported only when asked for (torch, lightgbm and xgboost each
take about a second to import)."""

from __future__ import annotations

from fabric.families.base import DeadlineReached, FitData, ModelFamily

__all__ = ["DeadlineReached", "FitData", "ModelFamily", "get_family"]


def get_family(name: str) -> ModelFamily:
    if name == "lightgbm":
        from fabric.families.trees import LightGBMFamily

        return LightGBMFamily()
    if name == "xgboost":
        from fabric.families.trees import XGBoostFamily

        return XGBoostFamily()
    if name == "mlp":
        from fabric.families.mlp import MLPFamily

        return MLPFamily()
    raise ValueError(f"model family {name!r} is unknown; use one of ['lightgbm', 'mlp', 'xgboost']")
