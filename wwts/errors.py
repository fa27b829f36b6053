"""The one error type of the front doors, mapped once (in `wwts.cli.main`) to the exit
codes of the interface (README.md): 2 a usage error, 1 a backend that failed. Each prints
as one line."""

from __future__ import annotations

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class WwtsError(Exception):
    exit_code = EXIT_FAILED

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(WwtsError):
    """Wrong flags, an unknown model, a missing checkpoint, a variable that is not set."""

    exit_code = EXIT_USAGE


class BackendError(WwtsError):
    """Elasticsearch, Kibana or the collector did not do what was asked."""

    exit_code = EXIT_FAILED

    @classmethod
    def of(cls, what: str, error: BaseException) -> BackendError:
        """What failed and why, in one line without credentials."""
        from telemetry.shipping import describe_error

        return cls(f"{what}: {describe_error(error)}")
