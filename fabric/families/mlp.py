"""A torch MLP for tabular data. Standardisation, NaN handling and one-hot encoding of the
categorical columns are layers of the module, so the exported ONNX graph takes the same raw
`input` matrix as the tree families."""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from fabric._imports import require
from fabric.families.base import FitData, ModelFamily, Reporter
from fabric.families.trees import validation_metric

MAX_EPOCHS = 40
PATIENCE = 5


def _build(torch: Any, data_shape: dict[str, Any], hidden: int, layers: int, dropout: float) -> Any:
    nn = torch.nn

    class TabularMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.register_buffer("mean", torch.tensor(data_shape["mean"], dtype=torch.float32))
            self.register_buffer("scale", torch.tensor(data_shape["scale"], dtype=torch.float32))
            self.register_buffer("y_mean", torch.tensor(data_shape["y_mean"], dtype=torch.float32))
            self.register_buffer("y_scale", torch.tensor(data_shape["y_scale"], dtype=torch.float32))
            self.numeric = list(data_shape["numeric"])
            self.categorical = [(c, k) for c, k in data_shape["categorical"]]
            width = len(self.numeric) + sum(k + 1 for _, k in self.categorical)
            blocks: list[Any] = []
            for _ in range(layers):
                blocks += [nn.Linear(width, hidden), nn.ReLU(), nn.Dropout(dropout)]
                width = hidden
            blocks.append(nn.Linear(width, 1))
            self.body = nn.Sequential(*blocks)
            self.binary = data_shape["binary"]

        def forward(self, x: Any) -> Any:
            parts = []
            if self.numeric:
                numeric = x[:, self.numeric]
                numeric = (numeric - self.mean) / self.scale
                parts.append(torch.where(torch.isnan(numeric), torch.zeros_like(numeric), numeric))
            for column, count in self.categorical:
                # index count is the "unseen" slot (-1 in the input)
                codes = x[:, column : column + 1]
                codes = torch.where(codes < 0, torch.full_like(codes, float(count)), codes)
                levels = torch.arange(count + 1, dtype=x.dtype).unsqueeze(0)
                parts.append((codes == levels).to(x.dtype))
            out = self.body(torch.cat(parts, dim=1)).squeeze(1)
            if self.binary:
                return torch.sigmoid(out)
            return out * self.y_scale + self.y_mean

    return TabularMLP()


class MLPFamily(ModelFamily):
    name = "mlp"
    param_prefix = "mlp_"
    uses_gpu = True

    def suggest(self, trial: Any) -> dict[str, Any]:
        return {
            "hidden": trial.suggest_categorical("mlp_hidden", [32, 64, 128, 256]),
            "layers": trial.suggest_int("mlp_layers", 1, 3),
            "dropout": trial.suggest_float("mlp_dropout", 0.0, 0.3),
            "lr": trial.suggest_float("mlp_lr", 1e-4, 3e-2, log=True),
            "weight_decay": trial.suggest_float("mlp_weight_decay", 1e-6, 1e-2, log=True),
            "batch_size": trial.suggest_categorical("mlp_batch_size", [256, 512, 1024]),
        }

    def warm_up(self) -> None:
        torch = require("torch")
        # the first optimiser construction imports torch's compiler stack: about 2 s here
        torch.optim.AdamW(torch.nn.Linear(1, 1).parameters())

    def _shape(self, data: FitData) -> dict[str, Any]:
        categorical = dict(zip(data.categorical_columns, data.categories, strict=True))
        numeric = [j for j in range(data.X_train.shape[1]) if j not in categorical]
        values = data.X_train[:, numeric].astype(np.float64)
        mean = np.nanmean(values, axis=0) if numeric else np.zeros(0)
        scale = np.nanstd(values, axis=0) if numeric else np.ones(0)
        scale = np.where(~np.isfinite(scale) | (scale < 1e-9), 1.0, scale)
        y = data.y_train.astype(np.float64)
        return {
            "numeric": numeric,
            "categorical": sorted(categorical.items()),
            "mean": np.nan_to_num(mean).tolist(),
            "scale": scale.tolist(),
            "y_mean": 0.0 if data.task == "binary" else float(y.mean()),
            "y_scale": 1.0 if data.task == "binary" else float(y.std() or 1.0),
            "binary": data.task == "binary",
        }

    def fit(self, params: dict[str, Any], data: FitData, report: Reporter | None = None) -> Any:
        torch = require("torch")
        torch.manual_seed(data.seed)
        torch.set_num_threads(1)
        model = _build(torch, self._shape(data), params["hidden"], params["layers"], params["dropout"])
        optimizer = torch.optim.AdamW(model.parameters(), lr=params["lr"], weight_decay=params["weight_decay"])
        X = torch.from_numpy(np.ascontiguousarray(data.X_train, dtype=np.float32))
        y = torch.from_numpy(data.y_train.astype(np.float32))
        if data.task == "binary":
            positive = float(data.y_train.mean())
            # weigh the rare class so that the network does not settle on the base rate
            weight = min(20.0, (1 - positive) / max(positive, 1e-6)) ** 0.5
            loss_fn = torch.nn.BCELoss(reduction="none")
        else:
            loss_fn = torch.nn.MSELoss()
        epochs = int(params.get("epochs") or MAX_EPOCHS)
        searching = "epochs" not in params
        generator = torch.Generator().manual_seed(data.seed)
        best_value, best_state, best_epoch, stale = None, None, 0, 0
        higher = data.metric in ("roc_auc", "pr_auc", "accuracy", "r2")
        ckpt = None if searching else data.checkpoint
        first = 1
        if ckpt is not None and ckpt.progress().get("epochs"):
            state = torch.load(ckpt.path("mlp.pt"), weights_only=False)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            generator.set_state(state["generator"])
            torch.set_rng_state(state["torch"])  # dropout masks continue where they stopped
            first = state["epoch"] + 1
        model.resumed_from = first - 1
        for epoch in range(first, epochs + 1):
            model.train()
            order = torch.randperm(len(X), generator=generator)
            for start in range(0, len(X), params["batch_size"]):
                data.check_deadline()
                batch = order[start : start + params["batch_size"]]
                optimizer.zero_grad()
                out = model(X[batch])
                if data.task == "binary":
                    target = y[batch]
                    w = torch.where(target > 0.5, torch.full_like(target, weight), torch.ones_like(target))
                    loss = (loss_fn(out.clamp(1e-6, 1 - 1e-6), target) * w).mean()
                else:
                    loss = loss_fn((out - model.y_mean) / model.y_scale, (y[batch] - model.y_mean) / model.y_scale)
                loss.backward()
                optimizer.step()
            if ckpt is not None:
                state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": epoch,
                         "generator": generator.get_state(), "torch": torch.get_rng_state()}  # fmt: skip
                ckpt.write("mlp.pt", lambda p, state=state: torch.save(state, p))
                ckpt.note(epochs=epoch, family="mlp")
            if not searching:
                continue
            value = validation_metric(data.metric, data.y_valid, self.predict(model, data.X_valid))
            if report is not None:
                report(epoch, value, lambda: self.to_onnx(model, data.X_train.shape[1]))
            if best_value is None or (value > best_value if higher else value < best_value):
                best_value, best_epoch, stale = value, epoch, 0
                best_state = {k: v.clone() for k, v in model.state_dict().items()}
            else:
                stale += 1
                if stale >= PATIENCE:
                    break
        if best_state is not None:
            model.load_state_dict(best_state)
        model.best_epoch = best_epoch or epochs
        model.eval()
        return model

    def predict(self, model: Any, X: np.ndarray) -> np.ndarray:
        torch = require("torch")
        model.eval()
        with torch.no_grad():
            return model(torch.from_numpy(np.ascontiguousarray(X, dtype=np.float32))).numpy().astype(np.float64)

    def to_onnx(self, model: Any, n_features: int) -> bytes:
        torch = require("torch")
        import warnings

        buffer = io.BytesIO()
        model.eval()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            # the TorchScript exporter writes one self-contained file (dynamo writes .onnx.data beside it)
            torch.onnx.export(
                model,
                (torch.zeros(2, n_features),),
                buffer,
                input_names=["input"],
                output_names=["score"],
                dynamic_axes={"input": {0: "N"}, "score": {0: "N"}},
                dynamo=False,
                opset_version=17,
            )
        return buffer.getvalue()

    def max_steps(self, params: dict[str, Any]) -> int:
        return MAX_EPOCHS

    def refit_params(self, params: dict[str, Any], model: Any) -> dict[str, Any]:
        return {**params, "epochs": int(getattr(model, "best_epoch", MAX_EPOCHS))}
