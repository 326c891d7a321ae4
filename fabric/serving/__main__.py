"""`python -m fabric.serving --model-dir DIR --version fraud:3 [--port 8080]`: one worker, uvloop and
httptools, no access log (a log line per request would cost more than the model).

SageMaker starts its containers with the argument `serve` and mounts the model at /opt/ml/model;
both are the defaults here, so the same image serves on every backend."""

from __future__ import annotations

import argparse
import gc
import os
from pathlib import Path


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m fabric.serving", description=__doc__)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve"])
    parser.add_argument("--model-dir", type=Path, default=Path("/opt/ml/model"))
    parser.add_argument("--version", default="model:0", help="registry address shown in answers and metrics")
    parser.add_argument("--model", default=None,
                        help="a registry address (name:version or name@alias) to serve from $FABRIC_HOME/<stack>, "
                             "instead of --model-dir (the kubernetes backend mounts the registry there)")
    parser.add_argument("--stack", default=os.environ.get("FABRIC_STACK", "dev"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--capture-dir", type=Path, default=None, help="write sampled request/prediction JSONL here")
    parser.add_argument("--capture-rate", type=float, default=float(os.environ.get("FABRIC_CAPTURE_RATE", "1.0")))
    parser.add_argument("--max-body-bytes", type=int, default=1_048_576)
    args = parser.parse_args(argv)

    import uvicorn

    from fabric.serving.app import ModelServer
    from fabric.serving.capture import Capture
    from fabric.errors import FabricError
    from fabric.serving.model import LoadedModel

    if args.model:
        from fabric.errors import FabricError
        from fabric.registry import fabric_home, open_registry

        try:
            version = open_registry(args.stack).get(args.model)
        except FabricError as exc:
            raise SystemExit(f"error: --model={args.model}: {exc}") from None
        args.model_dir, args.version = version.path, version.address
        if args.capture_dir is None:  # where `fabric monitor` reads it
            args.capture_dir = fabric_home() / args.stack / "endpoints" / version.name / "capture"
    capture = Capture(args.capture_dir, args.capture_rate) if args.capture_dir else None
    server = ModelServer(capture=capture, max_body_bytes=args.max_body_bytes)
    try:
        server.slots["champion"] = LoadedModel.load(args.model_dir, args.version, args.stack)
    except (OSError, ValueError, FabricError) as exc:
        raise SystemExit(f"error: --model-dir={args.model_dir}: {exc}") from None
    gc.freeze()  # what is loaded now lives as long as the server: full collections need not walk it
    uvicorn.run(server, host=args.host, port=args.port, loop="uvloop", http="httptools", access_log=False,
                log_level="warning", lifespan="on", workers=1)  # fmt: skip


if __name__ == "__main__":
    main()
