"""The installed metaal version, recorded in every checkpoint and summary (its own module, so
that the library reads it without importing the package's top level)."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("metaal")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
