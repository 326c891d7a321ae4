"""A training stage as its own process, for the kill-and-resume test:
`python tests/resumable_fit.py FAMILY CHECKPOINT_DIR OUT.npy` fits on the embedded data with
checkpoints and writes test-split predictions; prints {"resumed_from": N}."""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402

from fabric.checkpoint import Checkpoint  # noqa: E402
from fabric.data.dataset import prepare  # noqa: E402
from fabric.families import get_family  # noqa: E402
from fabric.search import fit_data  # noqa: E402
from fabric.spec import load_pipeline  # noqa: E402
from tests.conftest import write_spec  # noqa: E402

PARAMS = {
    # row and feature sampling off: LightGBM and XGBoost restart their samplers' RNG when a model is
    # continued, so only deterministic boosting continues bit for bit (see test_cost.py)
    "lightgbm": {"learning_rate": 0.05, "num_leaves": 31, "min_child_samples": 20, "feature_fraction": 1.0,
                 "bagging_fraction": 1.0, "lambda_l2": 1.0, "rounds": 600},
    "xgboost": {"eta": 0.05, "max_depth": 6, "min_child_weight": 1.0, "subsample": 1.0, "colsample_bytree": 1.0,
                "lambda": 1.0, "rounds": 600},
    "mlp": {"hidden": 128, "layers": 2, "dropout": 0.1, "lr": 1e-3, "weight_decay": 1e-5, "batch_size": 128, "epochs": 8},
}  # fmt: skip


def main() -> None:
    family_name, folder, out = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    spec = load_pipeline(write_spec(Path(tempfile.mkdtemp()), data={"rows": 12_000}))
    dataset = prepare(spec)
    data = replace(fit_data(dataset, spec, None), checkpoint=Checkpoint(folder, every=20))
    family = get_family(family_name)
    model = family.fit(PARAMS[family_name], data)
    np.save(out, family.predict(model, dataset.test.X))
    print(json.dumps({"resumed_from": model.resumed_from}))


if __name__ == "__main__":
    main()
