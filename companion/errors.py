"""One error hierarchy for the whole product; every error carries a stable code.

Codes are part of the interface: logs, the CLI's exit messages, tests and (later)
the parent dashboard match on them, so they never change meaning once released.
"""

from __future__ import annotations


class CompanionError(Exception):
    """An error a person can act on. ``code`` is stable, ``message`` says what to do."""

    code: str = "COMPANION_ERROR"

    def __init__(self, message: str, *, code: str | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    def __str__(self) -> str:
        return f"[{self.code}] {self.message}"


class ConfigError(CompanionError):
    code = "CONFIG_INVALID"


class ModelError(CompanionError):
    """Anything about obtaining, verifying, converting or loading a model."""

    code = "MODEL_ERROR"


# Stable codes used with ModelError (kept together so they are easy to find).
MODEL_UNKNOWN = "MODEL_UNKNOWN"
MODEL_MANIFEST_INVALID = "MODEL_MANIFEST_INVALID"
MODEL_PACKAGE_MISSING = "MODEL_PACKAGE_MISSING"
MODEL_CHECKSUM_MISMATCH = "MODEL_CHECKSUM_MISMATCH"
MODEL_NOT_PREPARED = "MODEL_NOT_PREPARED"
MODEL_EXPORT_FAILED = "MODEL_EXPORT_FAILED"
MODEL_EXPORT_DEPS_MISSING = "MODEL_EXPORT_DEPS_MISSING"
MODEL_LOAD_FAILED = "MODEL_LOAD_FAILED"
DISK_FULL = "DISK_FULL"
OUT_OF_MEMORY = "OUT_OF_MEMORY"
#: A staging folder of an interrupted prepare that could not be removed (``companion doctor`` names it).
STAGING_LEFTOVER = "STAGING_LEFTOVER"

