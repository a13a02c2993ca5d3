"""The meta-training config: a tree of dataclasses, filled from YAML and `--key value` flags
(metaal.config). Every task it describes (each source, the validation set) resolves to one
TaskSpec; the learner and the trainer are named, with their own options."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from metaal.config import ConfigError, from_dict
from metaal.data import TaskSpec
from metaal.errors import InputError
from metaal.learners import learner_spec
from metaal.trainers.base import TRAINERS


def _help(text: str, **kwargs):
    return field(metadata={"help": text}, **kwargs)


@dataclass
class SourceConfig:
    dataset: str = _help("dataset name or path, or 'synthetic' ('synthetic_regions') for random Gaussian-mixture "
                         "(Voronoi-region) tasks", default="mnist")
    held_out: list[int | str] = _help(
        "classes (ids or names; alphabets when by_group) never used for meta-training", default_factory=list)
    by_group: bool = _help("held_out names class groups (Omniglot alphabets)", default=False)
    pool_per_class: int | None = _help("override episode.pool_per_class for this source", default=None)
    eval_per_class: int | None = _help("override episode.eval_per_class for this source", default=None)
    n_ways: int | None = _help("override episode.n_ways for this source (e.g. 2: binary tasks)", default=None)
    rounds: int | None = _help("override loop.rounds for this source", default=None)
    k: int | None = _help("override loop.k for this source", default=None)
    imbalance: float | None = _help("override episode.imbalance for this source", default=None)


@dataclass
class ValidationSet:
    dataset: str = _help("dataset of the held-out validation classes", default="mnist")
    classes: list[int | str] = _help("its classes (ids or names); must be held out of every source",
                                     default_factory=lambda: [5, 6, 7, 8, 9])
    by_group: bool = _help("classes names class groups", default=False)


@dataclass
class DataConfig:
    sources: list[SourceConfig] = _help("meta-training sources, used in turn",
                                        default_factory=lambda: [SourceConfig(held_out=[5, 6, 7, 8, 9])])
    validation: ValidationSet = field(default_factory=ValidationSet)


@dataclass
class EpisodeConfig:
    n_ways: int = _help("classes per episode", default=5)
    initial_per_class: int = _help("initial labels per class", default=1)
    pool_per_class: int = _help("unlabeled pool samples per class", default=100)
    eval_per_class: int = _help("evaluation samples per class (from the test part)", default=100)
    imbalance: float = _help("the pool's commonest / rarest class ratio (a long tail; 1: balanced)", default=1.0)


@dataclass
class LoopConfig:
    rounds: int = _help("query rounds per episode", default=20)
    k: int = _help("samples labeled per round", default=5)


@dataclass
class PolicyConfig:
    hidden: int = _help("hidden units", default=64)
    context: bool = _help("also read a pooled summary of the pool", default=True)
    init: Literal["margin", "random"] = _help("start as margin sampling, or from random weights", default="margin")
    init_scale: float = _help("margin start: score = -init_scale * margin. Keep it near the target's "
                              "scale: a steep start spends the first steps flattening, scrambling the ranking",
                              default=1.0)
    init_from: str | None = _help("a policy.pt to start from instead of `init` (fine-tuning, e.g. with another "
                                  "trainer); its hidden and context must match these", default=None)


@dataclass
class TrainerConfig:
    name: str = _help("meta-trainer, by name (registered: oracle, reinforce, and any plug-in's)",
                      default="oracle")
    steps: int = _help("policy updates", default=200)
    episodes_per_step: int = _help("episodes per update", default=16)
    micro_batches: int | None = _help(
        "split each update's episodes into this many batches, each rolled out on its own (seeded by step and "
        "batch) and their gradients averaged; under torchrun the ranks share them, so N processes make the update "
        "one process makes with micro_batches N. null: one per process", default=None)
    lr: float = _help("Adam learning rate", default=3e-4)
    grad_clip: float = _help("gradient-norm clip", default=1.0)
    options: dict[str, Any] = _help("each trainer's own options, under its name: {oracle: {candidates: 32}, "
                                    "reinforce: {gamma: 0.9}}; only the named trainer's are used (see --help-config)",
                                    default_factory=dict)

    def validate(self):
        if self.steps < 1 or self.episodes_per_step < 1:
            raise InputError("steps and episodes_per_step must be >= 1")
        if self.micro_batches is not None and (self.micro_batches < 1 or self.episodes_per_step % self.micro_batches):
            raise InputError(f"micro_batches must divide episodes_per_step ({self.episodes_per_step}); "
                             f"got {self.micro_batches}")
        TRAINERS.get(self.name)
        for name in self.options:  # every section is checked, so a typo fails now whichever trainer runs
            self.trainer_options(name)

    def trainer_options(self, name: str | None = None):
        """The Options of trainer `name` (default: the named one), from its section of `options`."""
        name = self.name if name is None else name
        try:
            return from_dict(TRAINERS.get(name).Options, self.options.get(name) or {}, source=f"trainer.options.{name}")
        except ConfigError as e:
            raise InputError(str(e)) from None


@dataclass
class LearnerConfig:
    name: str = _help("the learner, by name (registered: logreg, rff_logreg, cnn, and any plug-in's)", default="logreg")
    options: dict[str, Any] = _help("each learner's own options, under its name: {logreg: {l2: 0.001}, cnn: "
                                    "{steps: 50}}; only the named learner's are used (see --help-config)",
                                    default_factory=dict)

    def validate(self):
        for name in {self.name, *self.options}:  # every section is checked, whichever learner runs
            self.spec(name)

    def spec(self, name: str | None = None) -> dict:
        """The full spec ({name, every option}) of learner `name` (default: the named one)."""
        name = self.name if name is None else name
        section = self.options.get(name) or {}
        if not isinstance(section, dict):
            raise InputError(f"learner.options.{name} must be a mapping of options, got {section!r}")
        return learner_spec({"name": name, **section})


@dataclass
class ValidationConfig:
    every: int = _help("validate every this many steps (and at the end)", default=25)
    seeds: int = _help("validation episodes (paired seeds)", default=20)
    baselines: list[str] = _help("strategies to compare against", default_factory=lambda: ["margin", "random"])
    policy_selection: Literal["top-k", "sequential"] = _help(
        "how the validated policy picks a round's k: top-k, as its training rollouts do, or sequential, as a "
        "loaded policy does by default", default="top-k")

    def validate(self):
        if self.every < 1:
            raise InputError(f"every must be >= 1 (steps between validations); got {self.every}")
        if self.seeds < 1:
            raise InputError(f"seeds must be >= 1 (validation episodes); got {self.seeds}")


@dataclass
class WandbConfig:
    mode: Literal["online", "offline", "disabled"] | None = _help(
        "online / offline / disabled; null: $WANDB_MODE, else online with a key, offline without", default=None)
    project: str = _help("W&B project", default="metaal")
    entity: str | None = _help("W&B entity (team or user); null: your default entity", default=None)
    name: str | None = _help("run name; null: TRAINER-LEARNER-SOURCES-sSEED, from the config", default=None)
    group: str | None = _help("run group (e.g. one per sweep or experiment)", default=None)
    tags: list[str] = _help("run tags", default_factory=list)
    notes: str | None = _help("run notes", default=None)


@dataclass
class MetaTrainConfig:
    seed: int = _help("seed of everything", default=0)
    device: str = _help("auto | cpu | cuda", default="auto")
    checkpoint_every: int = _help("write the resumable training state every this many steps", default=10)
    data: DataConfig = field(default_factory=DataConfig)
    episode: EpisodeConfig = field(default_factory=EpisodeConfig)
    loop: LoopConfig = field(default_factory=LoopConfig)
    learner: LearnerConfig = field(default_factory=LearnerConfig)
    policy: PolicyConfig = field(default_factory=PolicyConfig)
    trainer: TrainerConfig = field(default_factory=TrainerConfig)
    validation: ValidationConfig = field(default_factory=ValidationConfig)
    wandb: WandbConfig = field(default_factory=WandbConfig)

    def validate(self):
        if self.checkpoint_every < 1:
            raise InputError(f"checkpoint_every must be >= 1 (steps between checkpoints); got {self.checkpoint_every}")

    def run_name(self) -> str:
        """The W&B run name: wandb.name, else one made from the config and the seed."""
        sources = "+".join(dict.fromkeys(s.dataset for s in self.data.sources))
        return self.wandb.name or f"{self.trainer.name}-{self.learner.name}-{sources}-s{self.seed}"

    def source_tasks(self) -> list[TaskSpec]:
        """One TaskSpec per source: the episode and loop sections, with the source's overrides."""
        keys = ("n_ways", "pool_per_class", "eval_per_class", "rounds", "k", "imbalance")
        return [self._task(s.dataset, exclude=tuple(s.held_out), by_group=s.by_group,
                           **{key: getattr(s, key) for key in keys if getattr(s, key) is not None})
                for s in self.data.sources]

    def validation_task(self) -> TaskSpec:
        v = self.data.validation
        return self._task(v.dataset, classes=tuple(v.classes), by_group=v.by_group)

    def _task(self, dataset: str, **overrides) -> TaskSpec:
        e, loop = self.episode, self.loop
        base = dict(n_ways=e.n_ways, initial_per_class=e.initial_per_class, pool_per_class=e.pool_per_class,
                    eval_per_class=e.eval_per_class, imbalance=e.imbalance, rounds=loop.rounds, k=loop.k,
                    learner=self.learner.spec())
        return TaskSpec(dataset, **(base | overrides))
