"""Exception types. Every error meant for a user names the file (or key) and the problem."""


class RegexplainError(Exception):
    """Base class: the CLI prints these as one line, without a traceback."""


class DataError(RegexplainError, ValueError):
    """A data file or dataset is missing, corrupt or inconsistent."""


class ChecksumError(DataError):
    """A downloaded file does not have the expected checksum."""


class UnsafeArchiveError(DataError):
    """An archive member would be written outside the extraction root."""


class CheckpointError(RegexplainError, ValueError):
    """A checkpoint is missing, corrupt or does not match the architecture."""


class TrainingError(RegexplainError, RuntimeError):
    """Training cannot go on (e.g. a non-finite loss)."""


class UsageError(RegexplainError, ValueError):
    """A command-line value is impossible or contradicts the stored state (names the option)."""


class OutputError(RegexplainError, OSError):
    """An output location cannot be written (read-only, a file where a folder is needed, ...)."""


class ConfigError(RegexplainError, ValueError):
    """A configuration value is missing, of the wrong type or impossible."""


class AdapterError(RegexplainError, ValueError):
    """A network cannot be reached through an adapter (no such module, an output that is not a displacement
    or a grid, a code of the wrong shape, a factory that cannot be imported...)."""


class ExplorerUnavailable(RegexplainError):
    """The decomposition (or the checkpoint / data it names) cannot be opened."""


class AppError(RegexplainError, RuntimeError):
    """The explorer app could not be started."""


class RunInUseError(RegexplainError):
    """Another training holds the run folder's lock."""


class NotebookError(RegexplainError, RuntimeError):
    """A notebook of the main job failed; the message names the notebook and the cell."""


class Interrupted(BaseException):
    """SIGTERM arrived (raised by the CLI's handler). A ``BaseException`` like ``KeyboardInterrupt`` (SIGINT),
    so that no ``except Exception`` on the way mistakes it for a failure to recover from; atomic writes and
    run folders clean up on the way out, and the CLI prints one line and exits 128 + the signal number."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum
