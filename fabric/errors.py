"""Errors a user can fix. The CLI prints them as one line on stderr and exits with code 2."""

from __future__ import annotations


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
