"""Errors a user can fix. The CLI prints them as one line on stderr and exits with code 2."""

from __future__ import annotations

from collections.abc import Callable
from typing import NoReturn


class FabricError(Exception):
    """A problem with the user's input or environment, worded as: where, the value, the rule, the fix."""

    exit_code = 2


class SpecError(FabricError):
    """A pipeline spec or stack file is invalid."""


class DataError(FabricError):
    """The data does not match the spec."""


class RegistryError(FabricError):
    """A model address or registry operation is invalid."""


class CapabilityError(FabricError):
    """A backend was asked for something it cannot do."""


def run_main(main: Callable[[], int]) -> NoReturn:
    """`sys.exit(main())` for a container entrypoint, with a user error as one line and exit code 2."""
    import sys

    try:
        sys.exit(main())
    except FabricError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
