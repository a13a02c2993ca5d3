"""metaal: meta-learned active-learning acquisition functions."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("metaal")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"


# The two entry points for using a trained policy (imported after __version__, which they read).
from metaal.deploy import select  # noqa: E402
from metaal.policy import load_policy  # noqa: E402

__all__ = ["__version__", "load_policy", "select"]
