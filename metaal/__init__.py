"""metaal: meta-learned active-learning acquisition functions."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("metaal")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"


# Using a trained policy, and extending metaal by name (imported after __version__, which they read).
from metaal.data import TaskSpec, make_dataset, register_dataset  # noqa: E402
from metaal.deploy import select  # noqa: E402
from metaal.learners import register_learner  # noqa: E402
from metaal.policy import load_policy  # noqa: E402
from metaal.strategies import Selection, Strategy, register_strategy  # noqa: E402
from metaal.trainers import Trainer, register_trainer  # noqa: E402

__all__ = ["__version__", "TaskSpec", "make_dataset", "register_dataset", "select", "register_learner",
           "load_policy", "Selection", "Strategy", "register_strategy", "Trainer", "register_trainer"]
