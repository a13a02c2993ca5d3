"""Errors that tell the user what was wrong and what to do about it.

Every error metaal raises on purpose is a MetaalError, so `except MetaalError` catches any bad
input, and the command-line scripts turn it into one line on stderr and exit code 2. Where a
built-in type says the same (a bad value, a missing file), the error subclasses it too, so
code written against the built-in keeps working.
"""

import functools
import sys


class MetaalError(Exception):
    """Base class for every error metaal raises on purpose."""


class InputError(MetaalError, ValueError):
    """An argument, a tensor or a setting that cannot work: a wrong shape, an empty pool, a
    budget larger than the pool, a value out of range."""


class NonFiniteError(InputError):
    """NaN or inf where numbers are needed (inputs, model outputs, weights)."""


class StrategyError(MetaalError, RuntimeError):
    """A query strategy broke its contract (e.g. picked a labeled or repeated sample)."""


class DeviceError(MetaalError, RuntimeError):
    """The device asked for is not there."""


class OutputExistsError(MetaalError, FileExistsError):
    """An output folder already holds results that a run would overwrite."""


class CheckpointError(MetaalError):
    """A checkpoint file is missing, unreadable, or not what this metaal writes."""


class DataError(MetaalError):
    """A dataset could not be read."""


class MissingDataError(DataError):
    """A dataset file is not where it should be."""


class CorruptDataError(DataError):
    """A dataset file exists but its content is not what the format promises."""


class UnsafePickleError(CorruptDataError):
    """A pickle asked to build something other than numpy arrays and plain containers."""


def exits_cleanly(main):
    """For a script's main(): a MetaalError becomes one line on stderr and exit code 2, never
    a traceback. Returns main's own exit code otherwise (None counts as 0)."""

    @functools.wraps(main)
    def run(*args, **kwargs) -> int:
        try:
            return main(*args, **kwargs) or 0
        except MetaalError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2

    return run
