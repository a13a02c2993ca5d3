"""metaal: meta-learned active-learning acquisition functions."""

# Using a trained policy, and extending metaal by name. The names are imported on first use,
# so that `import metaal` stays light (no learn2learn, W&B or trainers until they are needed).
import importlib

from metaal.version import __version__

_EXPORTS = {
    "TaskSpec": "metaal.data", "make_dataset": "metaal.data", "register_dataset": "metaal.data",
    "select": "metaal.deploy", "active_learn": "metaal.active_learn", "History": "metaal.active_learn",
    "register_learner": "metaal.learners", "load_policy": "metaal.policy",
    "Selection": "metaal.strategies", "Strategy": "metaal.strategies", "register_strategy": "metaal.strategies",
    "Trainer": "metaal.trainers", "register_trainer": "metaal.trainers",
}
__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'metaal' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value  # once imported, a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
