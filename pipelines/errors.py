"""Exceptions that carry the exit codes of docs/design.md, so every entry point maps failures the same way."""

from __future__ import annotations


class AlphaDBError(Exception):
    """A failure with a clear message for the operator and a distinct exit code."""

    exit_code: int = 1


class ConfigError(AlphaDBError):
    """A bad or missing setting: nothing has been written."""

    exit_code = 2


class DatabaseUnavailable(AlphaDBError):
    """PostgreSQL cannot be reached."""

    exit_code = 3


class DataQualityError(AlphaDBError):
    """Data was loaded, but quality tests failed."""

    exit_code = 4


class UnknownCoin(AlphaDBError):
    """A configured coin id the API does not know: that pair failed, the other pairs were loaded."""

    exit_code = 5


class LockHeld(AlphaDBError):
    """Another run holds the lock: nothing was done."""

    exit_code = 75


EXIT_OK = 0
EXIT_FAILURE = AlphaDBError.exit_code
EXIT_CONFIG = ConfigError.exit_code
EXIT_DATABASE = DatabaseUnavailable.exit_code
EXIT_QUALITY = DataQualityError.exit_code
EXIT_LOCKED = LockHeld.exit_code
EXIT_UNKNOWN_COIN = UnknownCoin.exit_code
