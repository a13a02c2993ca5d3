"""metaal: meta-learned active-learning acquisition functions."""

# Using a trained policy, and extending metaal by name.
from metaal.active_learn import History, active_learn
from metaal.data import TaskSpec, make_dataset, register_dataset
from metaal.deploy import select
from metaal.learners import register_learner
from metaal.policy import load_policy
from metaal.strategies import Selection, Strategy, register_strategy
from metaal.trainers import Trainer, register_trainer
from metaal.version import __version__

__all__ = ["__version__", "TaskSpec", "make_dataset", "register_dataset", "select", "active_learn", "History",
           "register_learner", "load_policy", "Selection", "Strategy", "register_strategy", "Trainer",
           "register_trainer"]
