"""How a job can end other than by finishing, and the exit code of each.

* :class:`UserError` -- something the user can fix (bad data, bad config, a missing file): printed as one line
  ``error: <message>`` (plus ``hint: <what to do>`` when there is advice), exit code 2, no traceback unless asked
  for (``--verbose`` or ``HYDRA_FULL_ERROR=1``).
* :class:`JobInterrupted` -- a stop requested by a signal (preemption, Ctrl+C): the job saved what it could and
  ends with 128 + the signal number, like a process killed by that signal.
* anything else is a bug or an environment failure: exit code 1, with its traceback.
"""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator

USER_ERROR_EXIT_CODE = 2


class UserError(Exception):
    """A problem in the user's input: the message names the place (file:line and field, or config key).

    Args:
        message: what is wrong, naming where.
        hint: optional advice on how to fix it.
    """

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class ConfigError(UserError, ValueError):
    """A config value that cannot work (found before any data is read or model loaded)."""


@contextlib.contextmanager
def config_errors(key: str) -> Iterator[None]:
    """Turns the errors of building ``key`` from config (bad values, unknown names) into :class:`ConfigError`.

    Hydra's ``instantiate`` wraps a constructor's ``ValueError`` / ``TypeError`` in ``InstantiationException``;
    either way the message becomes ``<key>: <message>``. A :class:`UserError` passes through unchanged.
    """
    from hydra.errors import InstantiationException

    try:
        yield
    except UserError:
        raise
    except (ValueError, TypeError, InstantiationException, FileNotFoundError) as error:
        cause = error.__cause__ if isinstance(error, InstantiationException) and error.__cause__ else error
        raise ConfigError(f"{key}: {cause}") from error


def one_line(error: BaseException, limit: int = 2000) -> str:
    """``error`` as a single line (newlines folded), at most ``limit`` characters."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


class JobInterrupted(Exception):
    """The job stopped because of a signal (after saving a checkpoint when it was training).

    Args:
        signum: the signal that asked for the stop.
    """

    def __init__(self, signum: int) -> None:
        self.signum = int(signum)
        super().__init__(f"stopped by {signal.Signals(self.signum).name}")

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def exit_code_of(error: BaseException) -> int:
    """The process exit code a job ending with ``error`` has (see the module docstring)."""
    if isinstance(error, UserError):
        return USER_ERROR_EXIT_CODE
    if isinstance(error, JobInterrupted):
        return error.exit_code
    if isinstance(error, SystemExit):
        return error.code if isinstance(error.code, int) else (0 if error.code is None else 1)
    if isinstance(error, KeyboardInterrupt):
        return 128 + signal.SIGINT
    return 1
