"""metaal: meta-learned active-learning acquisition functions."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("metaal")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"
