"""One exception hierarchy for the whole exporter; each error knows its process exit code."""

from __future__ import annotations


class ExporterError(Exception):
    """Base class. ``exit_code`` is what the CLI returns when this error ends a run."""

    exit_code = 1


class JobFileError(ExporterError):
    """The job file (or a command-line override) is invalid."""

    exit_code = 2


class ConfigError(ExporterError):
    """The environment points the run somewhere it cannot work (a base URL that is not the API):
    like a job-file error, the fix is in the set-up, not in retrying."""

    exit_code = 2


class AuthError(ExporterError):
    """401/403 or a failed login: retrying cannot help, so the run stops at once."""

    exit_code = 3


class HTTPError(ExporterError):
    """An HTTP exchange failed. ``transient`` errors are retried by the client."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        transient: bool = False,
        retry_after: float | None = None,
        url: str = "",
    ) -> None:
        super().__init__(message)
        self.status = status
        self.transient = transient
        self.retry_after = retry_after
        self.url = url


class RetriesExhausted(ExporterError):
    """A transient error kept happening until the attempt or time budget ran out."""


class PaginationError(ExporterError):
    """The server broke a paging rule (cursor did not advance, ids went backwards, a page repeated)."""


class DataError(ExporterError):
    """A page could not be turned into rows (not JSON, wrong envelope)."""


class SchemaDriftError(ExporterError):
    """``schema_drift = "strict"`` and the API sent fields the schema does not know."""


class IncompleteRun(ExporterError):
    """Some fan-out targets (accounts, windows) still failed after retries; nothing was published."""


class CheckpointError(ExporterError):
    """A checkpoint cannot be used for this run (different job definition, corrupt state)."""

    exit_code = 2


class UnsafeRemoval(ExporterError):
    """A removal was asked for a path outside ``OUTPUT/_staging/``: refused, nothing was removed."""


class Interrupted(ExporterError):
    """SIGINT/SIGTERM: the run stopped after flushing and checkpointing."""

    exit_code = 130


class StorageError(ExporterError):
    """The output storage failed: a folder that cannot be created, a bucket out of reach, a lost upload."""

    def __init__(self, message: str, *, code: str = "") -> None:
        super().__init__(message)
        self.code = code


class OutputFolderError(StorageError):
    """The output folder cannot be created or written: the command or the job names the wrong
    place (or one without permission). Nothing ran; like a usage error, exit 2."""

    exit_code = 2


class StorageAuthError(StorageError):
    """The object store refused the credentials or the access."""

    exit_code = 3


class CommitError(ExporterError):
    """The commit record and what the staging area holds disagree: nothing more is published."""


class TableError(ExporterError):
    """A Delta or Iceberg table refused the run: catalog out of reach, a conflicting schema, a lost commit."""


class LeaseHeld(ExporterError):
    """Another run of the same job holds the output's lease; this run touched nothing."""

    exit_code = 4


class LeaseLost(ExporterError):
    """This run's lease was taken over (it stopped renewing in time); nothing is published."""
