"""Meta-training a query policy on episodic tasks; its objective is the accuracy gain.

Each step draws a batch of episodes from one meta-training source (sources take turns),
runs the active-learning loop with the policy choosing the queries, and updates the
policy with one of two trainers:

- `reinforce`: policy gradient. The policy samples k samples per round without
  replacement (Gumbel top-k = a Plackett-Luce draw); the reward of round t is the test
  accuracy gain acc(t+1) - acc(t). The same episodes rolled out with margin sampling
  give the baseline, so the advantage is how much more than margin the policy gained.
- `oracle`: one-step lookahead imitation (as LAL, ImitAL, ALIL). At every state the
  policy visits (DAgger: the rollout follows the current policy), M candidate samples get
  their true one-step accuracy gain (M retrained learners per episode, one batched call),
  and the policy learns to rank them (listwise: cross-entropy to softmax(gain / tau)).

Validation runs on held-out classes (never a test dataset) against margin and random on
the same episodes; the best policy by validation AULC is kept. Episode seeds and all
randomness derive from (seed, step), so a resumed run continues exactly where the
interrupted one left off.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from tqdm.auto import tqdm

from metaal.config import ConfigError, to_dict
from metaal.data import SYNTHETIC, EpisodeSampler, EpisodeSpec, SyntheticTaskSampler, load_dataset, split_classes
from metaal.device import resolve_device
from metaal.errors import CheckpointError, InputError
from metaal.evaluate import budget_notes, warn
from metaal.learners import LogisticRegression
from metaal.loop import run_active_learning
from metaal.metrics import Curves, aulc, plot_learning_curves, summarize, write_summary_json
from metaal.oracle import candidate_gains, sample_candidates
from metaal.outputs import check_output_dir
from metaal.policy import PolicyNet, PolicyStrategy, atomic_save, load_policy, read_checkpoint, save_policy
from metaal.strategies import QueryContext, Strategy, check_query, gumbel_top_k, make_strategy
from metaal.tracking import Tracker


def _help(text: str, **kwargs):
    return field(metadata={"help": text}, **kwargs)


# ---------------------------------------------------------------------------- config

@dataclass
class SourceConfig:
    dataset: str = _help("dataset name or path, or 'synthetic' for random Gaussian-mixture tasks", default="mnist")
    held_out: list[int | str] = _help(
        "classes (ids or names; alphabets when by_group) never used for meta-training", default_factory=list)
    by_group: bool = _help("held_out names class groups (Omniglot alphabets)", default=False)
    pool_per_class: int | None = _help("override episode.pool_per_class for this source", default=None)
    eval_per_class: int | None = _help("override episode.eval_per_class for this source", default=None)
    n_ways: int | None = _help("override episode.n_ways for this source (e.g. 2: binary tasks)", default=None)
    rounds: int | None = _help("override loop.rounds for this source", default=None)
    k: int | None = _help("override loop.k for this source", default=None)


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


@dataclass
class LoopConfig:
    rounds: int = _help("query rounds per episode", default=20)
    k: int = _help("samples labeled per round", default=5)


@dataclass
class LearnerConfig:
    l2: float = _help("L2 penalty of the logistic-regression head", default=1e-3)
    steps: int = _help("gradient steps per fit", default=100)
    n_members: int = _help("bootstrap members (for BALD / disagreement features)", default=8)
    n_components: int | None = _help("PCA components of the inputs (null: all)", default=64)


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
    name: Literal["reinforce", "oracle"] = _help("meta-trainer", default="oracle")
    steps: int = _help("policy updates", default=200)
    episodes_per_step: int = _help("episodes per update, run as one batch", default=16)
    lr: float = _help("Adam learning rate", default=3e-4)
    grad_clip: float = _help("gradient-norm clip", default=1.0)
    temperature: float = _help("reinforce: sampling temperature of the scores", default=1.0)
    gamma: float = _help("reinforce: discount of later gains (0 = immediate gain only)", default=0.9)
    candidates: int = _help("oracle: candidates whose true gain is measured per state", default=32)
    target_temperature: float = _help("oracle: tau of the softmax(gain / tau) ranking target", default=0.01)
    loss: Literal["listwise", "regression"] = _help(
        "oracle: listwise (cross-entropy to softmax(gain / tau)) or regression (the scores, centred per state, "
        "fit the centred gains in units of their batch std: the greedy policy needs E[gain | features])",
        default="listwise")
    top_candidates: float = _help("oracle: share of the candidates taken from the policy's own top scores (the "
                                  "rest uniform): the ranking that matters is at the top of the pool", default=0.0)

    def validate(self):
        if self.steps < 1 or self.episodes_per_step < 1 or self.candidates < 2:
            raise InputError("steps and episodes_per_step must be >= 1, candidates >= 2")
        if not 0 <= self.top_candidates <= 1:
            raise InputError("top_candidates is a share in [0, 1]")
        if self.temperature <= 0 or self.target_temperature <= 0 or not 0 <= self.gamma <= 1:
            raise InputError("temperatures must be > 0 and gamma in [0, 1]")


@dataclass
class ValidationConfig:
    every: int = _help("validate every this many steps (and at the end)", default=25)
    seeds: int = _help("validation episodes (paired seeds)", default=20)
    baselines: list[str] = _help("strategies to compare against", default_factory=lambda: ["margin", "random"])

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
    name: str | None = _help("run name", default=None)


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


# ---------------------------------------------------------------------------- trainer pieces

def plackett_luce_log_prob(scores: torch.Tensor, picked: torch.Tensor) -> torch.Tensor:
    """(B,) log-probability of drawing the ordered picks (B, k) without replacement."""
    log_prob = torch.zeros(scores.shape[0], device=scores.device)
    for j in range(picked.shape[1]):
        chosen = picked[:, j:j + 1]
        log_prob = log_prob + scores.gather(1, chosen).squeeze(1) - torch.logsumexp(scores, 1)
        scores = scores.scatter(1, chosen, float("-inf"))
    return log_prob


def imitation_loss(candidate_scores: torch.Tensor, gains: torch.Tensor, tau: float) -> torch.Tensor:
    """Listwise ranking loss: cross-entropy from softmax(gains / tau) to softmax(scores)."""
    target = (gains / tau).softmax(-1)
    return -(target * candidate_scores.log_softmax(-1)).sum(-1).mean()


def regression_loss(candidate_scores: torch.Tensor, gains: torch.Tensor) -> torch.Tensor:
    """Squared error between scores and gains, both centred per state (only the ranking
    within a state matters), the gains in units of their std over the batch."""
    gains = gains - gains.mean(-1, keepdim=True)
    gains = gains / gains.std().clamp_min(1e-8)
    return (candidate_scores - candidate_scores.mean(-1, keepdim=True) - gains).square().mean()


def discounted_returns(gains: torch.Tensor, gamma: float) -> torch.Tensor:
    """(B, T) per-round gains -> sum over t' >= t of gamma^(t'-t) gain(t')."""
    returns = torch.zeros_like(gains)
    running = torch.zeros_like(gains[:, 0])
    for t in reversed(range(gains.shape[1])):
        running = gains[:, t] + gamma * running
        returns[:, t] = running
    return returns


class _SamplingPolicy(Strategy):
    """REINFORCE rollout: samples the picks and keeps their log-probabilities (with grad)."""

    name = "policy-sampling"

    def __init__(self, net: PolicyNet, temperature: float):
        self.net, self.temperature, self.log_probs = net, temperature, []

    def select(self, ctx: QueryContext, k: int) -> torch.Tensor:
        check_query(ctx, k)
        scores = (self.net(ctx.features, ctx.available) / self.temperature).masked_fill(~ctx.available, float("-inf"))
        picked = gumbel_top_k(scores.detach(), k, ctx.uniform())
        self.log_probs.append(plackett_luce_log_prob(scores, picked))
        return picked


class _ImitatingPolicy(Strategy):
    """Oracle (DAgger) rollout: measures M candidates' true gains at the visited state, keeps
    the ranking loss, and follows the current policy's own greedy choice."""

    name = "policy-imitating"

    def __init__(self, net: PolicyNet, n_candidates: int, tau: float, top_share: float = 0.0,
                 loss: str = "listwise"):
        self.net, self.n_candidates, self.tau, self.top_share, self.loss = net, n_candidates, tau, top_share, loss
        self.candidate_scores, self.gains, self.agreement = [], [], []

    def objective(self) -> torch.Tensor:
        """The loss over every state visited in the rollout."""
        scores, gains = torch.cat(self.candidate_scores), torch.cat(self.gains)
        if self.loss == "listwise":
            return imitation_loss(scores, gains, self.tau)
        return regression_loss(scores, gains)

    def select(self, ctx: QueryContext, k: int) -> torch.Tensor:
        check_query(ctx, k)
        scores = self.net(ctx.features, ctx.available)
        candidates = sample_candidates(ctx, self.n_candidates, prefer=scores.detach(), top_share=self.top_share)
        with torch.no_grad():
            gains = candidate_gains(ctx.simulation, candidates)
        candidate_scores = scores.gather(1, candidates)
        self.candidate_scores.append(candidate_scores)
        self.gains.append(gains)
        # how often the policy's favourite candidate is among the oracle's best
        favourite = gains.gather(1, candidate_scores.argmax(1, keepdim=True)).squeeze(1)
        self.agreement.append((favourite >= gains.max(1).values - 1e-9).float().mean())
        return scores.detach().masked_fill(~ctx.available, float("-inf")).topk(k, dim=1).indices


# ---------------------------------------------------------------------------- the run

_STATE_KEYS = ("step", "net", "optimizer", "best", "log", "run_id", "config")  # what save_state writes


def _override(source: SourceConfig | None, key: str, default_section) -> int:
    """The source's own value of `key` where it sets one, else the config section's."""
    value = getattr(source, key) if source is not None else None
    return getattr(default_section, key) if value is None else value


class MetaTrainer:
    """Builds the samplers, the policy and the optimizer from a config; `run` trains."""

    def __init__(self, cfg: MetaTrainConfig, out: str | Path, data_root=None):
        self.cfg, self.out = cfg, Path(out)
        self.device = resolve_device(cfg.device)
        self.learner = LogisticRegression(l2=cfg.learner.l2, steps=cfg.learner.steps,
                                          n_members=cfg.learner.n_members, n_components=cfg.learner.n_components)
        self.sources = [self._source_sampler(s, data_root) for s in cfg.data.sources]
        self.validation = self._validation_sampler(data_root)
        self.warnings = warn(self._budget_notes())
        torch.manual_seed(cfg.seed)
        self.net = self._initial_net()
        self.net.to(self.device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.trainer.lr)
        self.step, self.best, self.log = 0, -1.0, {"steps": [], "validation": []}
        self.run_id = None
        self._baseline_curves: dict | None = None  # validation curves of the baselines: they never change

    def _budget_notes(self) -> list[str]:
        """A note for each source, and the validation set, whose budget labels over half its pool."""
        cfg, notes = self.cfg, []
        for i, source in enumerate(cfg.data.sources):
            rounds, k = _override(source, "rounds", cfg.loop), _override(source, "k", cfg.loop)
            notes += [f"data.sources[{i}] ({source.dataset}): {n}" for n in budget_notes(self._spec(source), rounds, k)]
        return notes + [f"validation: {n}" for n in budget_notes(self._spec(), cfg.loop.rounds, cfg.loop.k)]

    def _initial_net(self) -> PolicyNet:
        p = self.cfg.policy
        net = PolicyNet(hidden=p.hidden, context=p.context)
        if p.init_from is None:
            return net.init_as_heuristic("margin", sign=-1.0, scale=p.init_scale) if p.init == "margin" else net
        start = load_policy(p.init_from, device="cpu").net  # refuses foreign or incompatible files
        if start.hparams != net.hparams:
            raise ConfigError(f"policy.init_from {p.init_from} is a network with {start.hparams}, but the config "
                              f"asks for hidden={p.hidden}, context={p.context}; set policy.hidden and "
                              f"policy.context to match it")
        return start.train()

    def _spec(self, source: SourceConfig | None = None) -> EpisodeSpec:
        e = self.cfg.episode
        return EpisodeSpec(n_ways=_override(source, "n_ways", e), initial_per_class=e.initial_per_class,
                           pool_per_class=_override(source, "pool_per_class", e),
                           eval_per_class=_override(source, "eval_per_class", e))

    def _source_sampler(self, source: SourceConfig, data_root) -> EpisodeSampler | SyntheticTaskSampler:
        if source.dataset == SYNTHETIC:
            return SyntheticTaskSampler(self._spec(source), device=self.device)
        dataset = load_dataset(source.dataset, data_root)
        classes = tuple(range(dataset.num_classes))
        if source.held_out:
            classes = split_classes(dataset, source.held_out, by_group=source.by_group).meta_train
        v = self.cfg.data.validation
        if v.dataset == source.dataset:
            held = set(split_classes(dataset, v.classes, by_group=v.by_group).held_out)
            if held & set(classes):
                names = [dataset.class_names[c] for c in sorted(held & set(classes))]
                raise ConfigError(f"data.validation classes {names} of {source.dataset} are also meta-training "
                                  f"classes; add them to that source's held_out")
        return EpisodeSampler(dataset, self._spec(source), classes=classes, device=self.device)

    def _validation_sampler(self, data_root) -> EpisodeSampler:
        v = self.cfg.data.validation
        dataset = load_dataset(v.dataset, data_root)
        classes = split_classes(dataset, v.classes, by_group=v.by_group).held_out
        return EpisodeSampler(dataset, self._spec(), classes=classes, device=self.device)

    # -- one update --------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        cfg, step = self.cfg, self.step
        source = cfg.data.sources[step % len(self.sources)]
        sampler = self.sources[step % len(self.sources)]
        rounds, k = _override(source, "rounds", cfg.loop), _override(source, "k", cfg.loop)
        first = (cfg.seed * 100_003 + step) * cfg.trainer.episodes_per_step
        episodes = sampler.sample_batch(range(first, first + cfg.trainer.episodes_per_step))
        rollout_seed = cfg.seed * 1_000_003 + step
        self.net.train()
        if cfg.trainer.name == "reinforce":
            policy = _SamplingPolicy(self.net, cfg.trainer.temperature)
            result = run_active_learning(episodes, self.learner, policy, rounds, k, seed=rollout_seed)
            with torch.no_grad():
                base = run_active_learning(episodes, self.learner, make_strategy("margin"), rounds, k,
                                           seed=rollout_seed)
            advantage = (discounted_returns(result.accuracy.diff(dim=1), cfg.trainer.gamma)
                         - discounted_returns(base.accuracy.diff(dim=1), cfg.trainer.gamma)).to(self.device)
            advantage = advantage / (advantage.std() + 1e-6)
            loss = -(advantage * torch.stack(policy.log_probs, 1)).mean()
            metrics = {"reward/aulc": float(aulc(result.accuracy, result.n_labeled).mean()),
                       "reward/aulc_vs_margin": float(aulc(result.accuracy, result.n_labeled).mean()
                                                      - aulc(base.accuracy, base.n_labeled).mean())}
        else:
            policy = _ImitatingPolicy(self.net, cfg.trainer.candidates, cfg.trainer.target_temperature,
                                      cfg.trainer.top_candidates, cfg.trainer.loss)
            result = run_active_learning(episodes, self.learner, policy, rounds, k, seed=rollout_seed)
            loss = policy.objective()
            metrics = {"reward/aulc": float(aulc(result.accuracy, result.n_labeled).mean()),
                       "oracle/agreement": float(torch.stack(policy.agreement).mean())}
        self.optimizer.zero_grad()
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.trainer.grad_clip)
        self.optimizer.step()
        return {"loss": loss.item(), "grad_norm": float(grad_norm), **metrics}

    # -- validation --------------------------------------------------------------------

    def validate(self) -> tuple[dict[str, float], Curves]:
        cfg = self.cfg
        seeds = list(range(10**9, 10**9 + cfg.validation.seeds))  # far from training seeds
        episodes = self.validation.sample_batch(seeds)
        if self._baseline_curves is None:
            self._baseline_curves = {
                name: run_active_learning(episodes, self.learner, make_strategy(name), cfg.loop.rounds, cfg.loop.k,
                                          seed=cfg.seed).accuracy.numpy()
                for name in cfg.validation.baselines}
        result = run_active_learning(episodes, self.learner, PolicyStrategy(self.net), cfg.loop.rounds, cfg.loop.k,
                                     seed=cfg.seed)
        curves = Curves(accuracy={"policy": result.accuracy.numpy(), **self._baseline_curves},
                        n_labeled=result.n_labeled.numpy(), seeds=seeds)
        scores = {name: aulc(acc, curves.n_labeled) for name, acc in curves.accuracy.items()}
        metrics = {f"val/aulc_{name}": float(s.mean()) for name, s in scores.items()}
        for name in cfg.validation.baselines:
            metrics[f"val/aulc_policy_minus_{name}"] = float((scores["policy"] - scores[name]).mean())
        return metrics, curves

    # -- state on disk -------------------------------------------------------------------

    def save_state(self):
        tmp = self.out / "log.json.tmp"  # atomic, like the checkpoint: readers never see half a file
        tmp.write_text(json.dumps(self.log, indent=1) + "\n")
        tmp.replace(self.out / "log.json")
        atomic_save({"step": self.step, "net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                     "best": self.best, "log": self.log, "run_id": self.run_id, "config": to_dict(self.cfg)},
                    self.out / "checkpoint.pt")

    def load_state(self):
        path = self.out / "checkpoint.pt"
        if not path.is_file():
            raise CheckpointError(f"--resume: no training state at {path}; start without --resume")
        state = read_checkpoint(path, "training state", map_location=self.device)
        missing = [k for k in _STATE_KEYS if k not in state]
        if missing:
            raise CheckpointError(f"--resume: {path} lacks {missing}; it is not a training state that "
                                  f"this metaal writes. Start afresh with another --out")
        if state["config"] != to_dict(self.cfg):
            saved, now = state["config"], to_dict(self.cfg)
            diff = [k for k in set(saved) | set(now) if saved.get(k) != now.get(k)]
            raise ConfigError(f"--resume: the config differs from the interrupted run's in {sorted(diff)}; "
                              f"resume with the same config, or use another --out")
        try:
            self.net.load_state_dict(state["net"])
            self.optimizer.load_state_dict(state["optimizer"])
        except (RuntimeError, ValueError, KeyError) as e:
            raise CheckpointError(f"--resume: the weights in {path} do not fit this policy network ({e})") from e
        self.step, self.best, self.log, self.run_id = state["step"], state["best"], state["log"], state["run_id"]

    # -- the loop ---------------------------------------------------------------------------

    def run(self, resume: bool = False, progress: bool = True) -> dict:
        cfg = self.cfg
        if resume:
            self.load_state()
        else:
            check_output_dir(self.out, flag="--resume (to continue the run it holds)")
            self.out.mkdir(parents=True, exist_ok=True)
        tracker = Tracker(to_dict(cfg), self.out, mode=cfg.wandb.mode, project=cfg.wandb.project,
                          name=cfg.wandb.name, run_id=self.run_id, job_type="meta-train")
        self.run_id = tracker.run_id
        start = time.perf_counter()
        bar = tqdm(range(self.step, cfg.trainer.steps), initial=self.step, total=cfg.trainer.steps,
                   desc=f"meta-train ({cfg.trainer.name})", disable=not progress)
        try:
            for self.step in bar:
                metrics = self.train_step()
                self.log["steps"].append({"step": self.step, **metrics})
                tracker.log(metrics, step=self.step)
                bar.set_postfix(loss=f"{metrics['loss']:.3f}", aulc=f"{metrics['reward/aulc']:.3f}")
                last = self.step == cfg.trainer.steps - 1
                if (self.step + 1) % cfg.validation.every == 0 or last:
                    self._validate_and_keep_best(tracker)
                self.step += 1  # the next step to run, as saved
                if self.step % cfg.checkpoint_every == 0 or last:
                    self.save_state()
            summary = {"steps": cfg.trainer.steps, "best_val_aulc": self.best,
                       "seconds_this_session": round(time.perf_counter() - start, 1),
                       "final_validation": self.log["validation"][-1] if self.log["validation"] else None,
                       "warnings": self.warnings}
            (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            tracker.log_artifact(self.out / "policy.pt", name="policy", type="model", metadata=summary)
            tracker.finish()
            return summary
        except BaseException:
            tracker.finish(exit_code=1)
            raise

    def _validate_and_keep_best(self, tracker: Tracker):
        metrics, curves = self.validate()
        self.log["validation"].append({"step": self.step, **metrics})
        tracker.log(metrics, step=self.step)
        if metrics["val/aulc_policy"] > self.best:
            self.best = metrics["val/aulc_policy"]
            save_policy(self.net, self.out / "policy.pt", config=to_dict(self.cfg),
                        info={"step": self.step, **metrics})
            comparison = summarize(curves, reference="policy")
            comparison["step"] = self.step
            write_summary_json(comparison, self.out / "validation_summary.json")
            plot_learning_curves(curves, self.out / "validation_curves.png",
                                 title=f"validation (held-out classes), step {self.step}")
            rows = [[name, int(seed), int(n), float(acc)] for name, accs in curves.accuracy.items()
                    for seed, row in zip(curves.seeds, accs) for n, acc in zip(curves.n_labeled, row)]
            tracker.log_table("validation/curves", ["strategy", "seed", "n_labeled", "accuracy"], rows)
            tracker.log_image("validation/curves_plot", self.out / "validation_curves.png")
