"""Meta-training: the trainer interface (base.py), the two trainers (oracle imitation and
REINFORCE), the config and the runner that owns sources, validation and checkpoints."""

from metaal.trainers.base import TRAINERS, Trainer, register_trainer
from metaal.trainers.config import MetaTrainConfig
from metaal.trainers.oracle import ImitatingRollout, OracleTrainer, imitation_loss, regression_loss
from metaal.trainers.reinforce import ReinforceTrainer, SamplingRollout, discounted_returns, plackett_luce_log_prob
from metaal.trainers.runner import MetaTrainer

__all__ = [
    "TRAINERS", "Trainer", "register_trainer", "ImitatingRollout", "OracleTrainer", "imitation_loss",
    "regression_loss", "ReinforceTrainer", "SamplingRollout", "discounted_returns", "plackett_luce_log_prob",
    "MetaTrainConfig", "MetaTrainer",
]
