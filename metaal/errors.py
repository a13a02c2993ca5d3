"""Errors that tell the user what was wrong and what to do about it."""


class MetaalError(Exception):
    """Base class for every error metaal raises on purpose."""


class DataError(MetaalError):
    """A dataset could not be read."""


class MissingDataError(DataError):
    """A dataset file is not where it should be."""


class CorruptDataError(DataError):
    """A dataset file exists but its content is not what the format promises."""


class UnsafePickleError(CorruptDataError):
    """A pickle asked to build something other than numpy arrays and plain containers."""
