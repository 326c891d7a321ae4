"""Reference servers for benchmarks/serve.py, each one uvicorn worker like the project's server:
  constant  answers a fixed body (the load generator's floor)
  bare      Starlette + ONNX Runtime: parse the JSON record, score, answer; no validation, metrics
            or capture (the bare floor the project's server is compared with)
Usage: python _reference_apps.py constant|bare MODEL.onnx SCHEMA.json PORT
"""

from __future__ import annotations

import json
import sys

import numpy as np
import onnxruntime as ort
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def main() -> None:
    kind, model_path, schema_path, port = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if kind == "constant":
        body = b'{"predictions":[0.5]}'

        async def constant(scope, receive, send):  # noqa: ANN001, ANN202
            if scope["type"] != "http":
                return
            while (await receive()).get("more_body"):
                pass
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json"), (b"content-length", b"21")]})
            await send({"type": "http.response.body", "body": body})

        app = constant
    else:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(model_path, options, providers=["CPUExecutionProvider"])
        features = json.load(open(schema_path))["features"]
        index = {f["name"]: {c: i for i, c in enumerate(f.get("categories", []))} for f in features}
        names = [(f["name"], f["kind"] == "categorical") for f in features]

        async def invocations(request: Request) -> Response:
            record = json.loads(await request.body())["records"][0]
            x = np.array([[index[n].get(record[n], -1) if cat else record[n] for n, cat in names]], dtype=np.float32)
            score = session.run(None, {"input": x})[0].reshape(-1).tolist()
            return Response(json.dumps({"predictions": score}), media_type="application/json")

        app = Starlette(routes=[Route("/invocations", invocations, methods=["POST"])])
    uvicorn.run(app, host="127.0.0.1", port=port, loop="uvloop", http="httptools", access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
