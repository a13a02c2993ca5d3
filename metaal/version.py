"""The one place metaal's version is written: pyproject.toml reads it from here (setuptools'
dynamic version), and every checkpoint and summary records it. Its own module, so that the
library reads it without importing the package's top level."""

__version__ = "0.2.0"
