"""The meta-training runner: task sources in turn, one trainer update per step, validation
on held-out classes, checkpoints and logging; data-parallel under torchrun (distributed.py).

Each step draws a batch of episodes from one source (sources take turns), in micro-batches
(shared among the processes under torchrun), and asks the trainer (trainers/, by name) for
the loss of each; their gradients are averaged into one update. Validation runs on held-out
classes (never a test dataset) against the baselines on the same episodes; the best policy
by validation AULC is kept, with the tasks and the learner it was trained on. Episode seeds
and all randomness derive from (seed, step), so a resumed run continues exactly where the
interrupted one left off.
"""

from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from metaal.config import ConfigError, to_dict
from metaal.data import split_classes
from metaal.device import resolve_device
from metaal.distributed import ProcessGroup
from metaal.errors import CheckpointError
from metaal.evaluate import warn
from metaal.learners import make_learner
from metaal.loop import run_active_learning
from metaal.metrics import Curves, aulc, plot_learning_curves, summarize, write_summary_json
from metaal.outputs import check_output_dir, claim_output_dir
from metaal.policy import PolicyNet, PolicyStrategy, atomic_save, load_policy, read_checkpoint, save_policy
from metaal.strategies import make_strategy
from metaal.tracking import Tracker
from metaal.trainers.base import TRAINERS
from metaal.trainers.config import MetaTrainConfig

_STATE_KEYS = ("step", "net", "optimizer", "best", "log", "run_id", "config")  # what save_state writes
VALIDATION_SEED = 10**9  # validation episodes' first seed: far from every training seed
MICRO_BATCH_SEED_STRIDE = 10**12  # rollout seeds of a step's micro-batches: far from other steps'


class MetaTrainer:
    """Builds the task samplers, the policy, the trainer and the optimizer from a config; `run` trains."""

    def __init__(self, cfg: MetaTrainConfig, out: str | Path, data_root=None):
        self.cfg, self.out = cfg, Path(out)
        self.group, self.device = ProcessGroup.from_env(resolve_device(cfg.device))
        micro = cfg.trainer.micro_batches or self.group.world_size
        if micro % self.group.world_size or cfg.trainer.episodes_per_step % micro:
            raise ConfigError(f"trainer.micro_batches ({micro}) must be a multiple of the processes "
                              f"({self.group.world_size}) and divide trainer.episodes_per_step "
                              f"({cfg.trainer.episodes_per_step})")
        self.micro_batches = micro
        self.learner = make_learner(cfg.learner.spec())
        self.tasks, self.validation_task = cfg.source_tasks(), cfg.validation_task()
        samplers = [task.sampler(data_root, self.device) for task in [*self.tasks, self.validation_task]]
        self.sources, self.validation = [s for s, _ in samplers[:-1]], samplers[-1][0]
        for sampler in self.sources:  # refused now, not at the first step or validation
            sampler.check_batch(cfg.trainer.episodes_per_step // micro)
        self.validation.check_batch(cfg.validation.seeds)
        self._check_held_out()
        self.warnings = warn(self._notes([notes for _, notes in samplers]))
        torch.manual_seed(cfg.seed)
        self.net = self._initial_net()
        self.net.to(self.device)
        self.group.broadcast_parameters(self.net)
        self.trainer = TRAINERS.get(cfg.trainer.name)(cfg.trainer.trainer_options(), self.net, self.learner)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.trainer.lr)
        self.step, self.best, self.log = 0, -1.0, {"steps": [], "validation": []}
        self.run_id = None
        self._baseline_curves: dict | None = None  # validation curves of the baselines: they never change

    def _notes(self, notes: list[list[str]]) -> list[str]:
        """The caps and budget notes of each source and of the validation set, saying which."""
        where = [f"data.sources[{i}] ({task.dataset})" for i, task in enumerate(self.tasks)] + ["validation"]
        return [f"{place}: {note}" for place, task_notes in zip(where, notes) for note in task_notes]

    def _check_held_out(self):
        """No validation class may be a meta-training class of a source on the same dataset."""
        v = self.validation_task
        for task, sampler in zip(self.tasks, self.sources):
            if task.dataset != v.dataset:
                continue
            dataset = sampler.dataset
            shared = set(split_classes(dataset, list(v.classes), by_group=v.by_group).held_out) & set(sampler.classes)
            if shared:
                names = [dataset.class_names[c] for c in sorted(shared)]
                raise ConfigError(f"data.validation classes {names} of {task.dataset} are also meta-training "
                                  f"classes; add them to that source's held_out")

    def _initial_net(self) -> PolicyNet:
        p = self.cfg.policy
        net = PolicyNet(hidden=p.hidden, context=p.context)
        if p.init_from is None:
            return net.init_as_heuristic("margin", sign=-1.0, scale=p.init_scale) if p.init == "margin" else net
        start = load_policy(p.init_from, device="cpu").net  # refuses foreign or incompatible files
        wanted = {"hidden": p.hidden, "context": p.context}
        if {key: start.hparams[key] for key in wanted} != wanted:
            raise ConfigError(f"policy.init_from {p.init_from} is a network with {start.hparams}, but the config "
                              f"asks for {wanted}; set policy.hidden and policy.context to match it")
        return start.train()

    # -- one update --------------------------------------------------------------------

    def train_step(self) -> dict[str, float]:
        cfg, step = self.cfg, self.step
        task, sampler = self.tasks[step % len(self.tasks)], self.sources[step % len(self.sources)]
        size = cfg.trainer.episodes_per_step // self.micro_batches
        first = (cfg.seed * 100_003 + step) * cfg.trainer.episodes_per_step
        self.net.train()
        self.optimizer.zero_grad()
        metrics = []
        for batch in self.group.share(range(self.micro_batches)):
            episodes = sampler.sample_batch(range(first + batch * size, first + (batch + 1) * size))
            seed = cfg.seed * 1_000_003 + step + batch * MICRO_BATCH_SEED_STRIDE
            loss, values = self.trainer.objective(episodes, task, seed=seed)
            (loss / self.micro_batches).backward()  # summed over batches and ranks: the mean
            metrics.append({"loss": loss.item(), **values})
        self.group.sum_gradients(self.net.parameters())
        grad_norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), cfg.trainer.grad_clip)
        self.optimizer.step()
        mean = {key: sum(m[key] for m in metrics) / len(metrics) for key in metrics[0]}
        return self.group.mean(mean) | {"grad_norm": float(grad_norm)}

    # -- validation --------------------------------------------------------------------

    def validate(self) -> tuple[dict[str, float], Curves]:
        cfg, task = self.cfg, self.validation_task
        seeds = range(VALIDATION_SEED, VALIDATION_SEED + cfg.validation.seeds)
        episodes = self.validation.sample_batch(seeds)

        def curve(strategy) -> torch.Tensor:
            return run_active_learning(episodes, self.learner, strategy, task.rounds, task.k, seed=cfg.seed)

        if self._baseline_curves is None:
            self._baseline_curves = {name: curve(make_strategy(name)).accuracy.numpy()
                                     for name in cfg.validation.baselines}
        result = curve(PolicyStrategy(self.net, sequential=cfg.validation.policy_selection == "sequential"))
        curves = Curves(accuracy={"policy": result.accuracy.numpy(), **self._baseline_curves},
                        n_labeled=result.n_labeled.numpy(), seeds=list(seeds))
        scores = {name: aulc(acc, curves.n_labeled) for name, acc in curves.accuracy.items()}
        metrics = {f"val/aulc_{name}": float(s.mean()) for name, s in scores.items()}
        for name in cfg.validation.baselines:
            metrics[f"val/aulc_policy_minus_{name}"] = float((scores["policy"] - scores[name]).mean())
        return metrics, curves

    # -- state on disk -------------------------------------------------------------------

    def save_state(self, tracker: Tracker):
        tmp = self.out / "log.json.tmp"  # atomic, like the checkpoint: readers never see half a file
        tmp.write_text(json.dumps(self.log, indent=1) + "\n")
        tmp.replace(self.out / "log.json")
        atomic_save({"step": self.step, "net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(),
                     "best": self.best, "log": self.log, "run_id": self.run_id, "config": to_dict(self.cfg)},
                    self.out / "checkpoint.pt")
        tracker.log_artifact(self.out / "checkpoint.pt", name=f"checkpoint-{self.run_id}", type="checkpoint",
                             metadata={"step": self.step}, aliases=["latest", f"step-{self.step}"])

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
        """Train to the last step (from the saved state with `resume`); returns the summary.
        Under torchrun every rank trains; rank 0 alone claims the output folder (one run at a
        time), writes, validates and logs."""
        main = self.group.is_main
        if main and not resume:
            check_output_dir(self.out, flag="--resume (to continue the run it holds)",
                             unfinished=f"pass --resume (with --out {self.out}) to continue it")
        with claim_output_dir(self.out, "metaal meta-train") if main else contextlib.nullcontext():
            if resume:
                self.load_state()
            return self._run(progress and main)

    def _run(self, progress: bool) -> dict:
        cfg, main = self.cfg, self.group.is_main
        w = cfg.wandb
        tracker = Tracker(to_dict(cfg), self.out, mode=w.mode if main else "disabled", project=w.project,
                          entity=w.entity, name=cfg.run_name(), group=w.group, tags=w.tags, notes=w.notes,
                          run_id=self.run_id, job_type="meta-train")
        self.run_id = tracker.run_id if main else self.run_id
        start = time.perf_counter()
        try:
            self._train(tracker, progress)
            summary = {"steps": cfg.trainer.steps, "best_val_aulc": self.best, "processes": self.group.world_size,
                       "seconds_this_session": round(time.perf_counter() - start, 1),
                       "final_validation": self.log["validation"][-1] if self.log["validation"] else None,
                       "warnings": self.warnings}
            if main:
                (self.out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            tracker.finish()
            return summary
        except BaseException:
            tracker.finish(exit_code=1)
            raise
        finally:
            self.group.close()

    def _train(self, tracker: Tracker, progress: bool):
        cfg = self.cfg
        bar = tqdm(range(self.step, cfg.trainer.steps), initial=self.step, total=cfg.trainer.steps,
                   desc=f"meta-train ({cfg.trainer.name})", disable=not progress)
        for self.step in bar:
            metrics = self.train_step()
            self.log["steps"].append({"step": self.step, **metrics})
            tracker.log(metrics, step=self.step)
            bar.set_postfix(loss=f"{metrics['loss']:.3f}", aulc=f"{metrics['reward/aulc']:.3f}")
            last = self.step == cfg.trainer.steps - 1
            if self.group.is_main and ((self.step + 1) % cfg.validation.every == 0 or last):
                self._validate_and_keep_best(tracker)
            self.step += 1  # the next step to run, as saved
            if self.group.is_main and (self.step % cfg.checkpoint_every == 0 or last):
                self.save_state(tracker)

    def _validate_and_keep_best(self, tracker: Tracker):
        metrics, curves = self.validate()
        self.log["validation"].append({"step": self.step, **metrics})
        tracker.log(metrics, step=self.step)
        if metrics["val/aulc_policy"] <= self.best:
            return
        self.best = metrics["val/aulc_policy"]
        artifact = f"policy-{self.run_id}"  # the transfer runs that use this file link to it (lineage)
        info = {"step": self.step, **metrics} | ({"wandb_artifact": artifact} if self.run_id else {})
        save_policy(self.net, self.out / "policy.pt", config=to_dict(self.cfg), info=info,
                    tasks={"sources": [t.to_dict() for t in self.tasks], "validation": self.validation_task.to_dict()},
                    learner=self.cfg.learner.spec())
        tracker.log_artifact(self.out / "policy.pt", name=artifact, type="model", metadata=info,
                             aliases=["best", "latest"])
        tracker.set_summary({f"best/{key}": value for key, value in info.items() if key != "wandb_artifact"})
        comparison = summarize(curves, reference="policy")
        comparison["step"] = self.step
        write_summary_json(comparison, self.out / "validation_summary.json")
        plot_learning_curves(curves, self.out / "validation_curves.png",
                             title=f"validation (held-out classes), step {self.step}")
        rows = [[name, int(seed), int(n), float(acc)] for name, accs in curves.accuracy.items()
                for seed, row in zip(curves.seeds, accs) for n, acc in zip(curves.n_labeled, row)]
        tracker.log_table("validation/curves", ["strategy", "seed", "n_labeled", "accuracy"], rows)
        tracker.log_image("validation/curves_plot", self.out / "validation_curves.png")
