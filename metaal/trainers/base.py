"""The meta-trainer interface: one objective from a batch of episodes.

A trainer owns its options (the `trainer.options` section of a config, checked against its
`Options` dataclass), its rollout strategy and its loss. The runner (runner.py) owns the
rest: the task sources, the optimizer, validation, checkpoints and logging. Register your
own trainer by name:

    @metaal.register_trainer("my_trainer")
    class MyTrainer(metaal.trainers.Trainer):
        @dataclass
        class Options:
            temperature: float = 1.0

        def objective(self, episodes, task, seed):
            result = run_active_learning(episodes, self.learner, MyRollout(self.net), task.rounds, task.k, seed=seed)
            return loss_from(result.records), {"reward/aulc": ...}
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from metaal.data import Episode, TaskSpec
from metaal.learners import Learner
from metaal.policy import PolicyNet
from metaal.registry import Registry


class Trainer:
    """Subclass with an `Options` dataclass and `objective`; the runner builds it as
    Trainer(options, net, learner) and, every step, backpropagates the loss it returns."""

    @dataclass
    class Options:
        pass

    def __init__(self, options, net: PolicyNet, learner: Learner):
        self.options, self.net, self.learner = options, net, learner

    def objective(self, episodes: Episode, task: TaskSpec, seed: int) -> tuple[torch.Tensor, dict[str, float]]:
        """The loss of one update from a batch of episodes of `task` (rolled out with `seed`),
        differentiable in the policy network's parameters, and the metrics to log."""
        raise NotImplementedError


TRAINERS: Registry[type[Trainer]] = Registry("trainer")


def register_trainer(name: str, trainer: type[Trainer] | None = None, *, replace: bool = False):
    """Register a Trainer subclass under `name` (trainer.name in configs), as a call or a decorator."""
    return TRAINERS.register(name, trainer, replace=replace)
