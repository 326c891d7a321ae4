"""boto3 clients for one stack (region from the stack, botocore standard retries, an optional
emulator URL in FABRIC_AWS_ENDPOINT_URL) and one translation of AWS errors into messages a person
can act on."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from fabric._imports import require
from fabric.errors import FabricError

ENDPOINT_ENV = "FABRIC_AWS_ENDPOINT_URL"


class Clients:
    def __init__(self, region: str) -> None:
        boto3 = require("boto3")
        from botocore.config import Config

        self.region = region
        self.session = boto3.session.Session(region_name=region)
        self.config = Config(retries={"mode": "standard", "max_attempts": 6}, region_name=region)
        self.endpoint_url = os.environ.get(ENDPOINT_ENV) or None
        self._cache: dict[str, Any] = {}

    def __getattr__(self, service: str) -> Any:  # clients.sagemaker, clients.s3, ...
        name = service.replace("_", "-")
        if name not in self._cache:
            self._cache[name] = self.session.client(name, config=self.config, endpoint_url=self.endpoint_url)
        return self._cache[name]


@contextmanager
def aws_errors(action: str) -> Iterator[None]:
    """Credentials missing, access denied, throttling past the retries, a failed resource: one line."""
    from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError, NoRegionError

    try:
        yield
    except NoCredentialsError:
        raise FabricError(f"{action}: no AWS credentials; run `aws configure` or set AWS_PROFILE "
                          f"(for the emulator: {ENDPOINT_ENV} and test credentials)") from None  # fmt: skip
    except NoRegionError:
        raise FabricError(f"{action}: no AWS region; set aws:region in the stack file") from None
    except EndpointConnectionError as exc:
        raise FabricError(f"{action}: cannot reach AWS ({exc}); check the network or {ENDPOINT_ENV}") from None
    except ClientError as exc:
        code = exc.response.get("Error", {}).get("Code", "")
        message = exc.response.get("Error", {}).get("Message", "")
        if code in ("AccessDenied", "AccessDeniedException", "UnauthorizedOperation"):
            raise FabricError(f"{action}: access denied ({message}); the role needs that permission (see infra/iam.py)") from None
        if code in ("ThrottlingException", "Throttling", "TooManyRequestsException"):
            raise FabricError(f"{action}: AWS throttled the calls past the standard retries; run again later") from None
        raise FabricError(f"{action}: {code}: {message}") from None
