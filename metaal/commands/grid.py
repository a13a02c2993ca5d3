"""The benchmark grid: every target of the transfer table in every regime, 50 fresh seeds.

    metaal grid --out DIR --data-root ../shared/data [--policy NAME_OR_PATH] [--jobs 2] [--targets a,b] \
        [--regimes balanced-k5,...] [--seeds 50] [--seed-offset 30000] [--reference-candidates 16] [--topk-policy] \
        [--learner NAME | '{name: NAME, option: value}'] [--extra-policy policy_NAME=PATH ...]
    python benchmarks/transfer_grid.py ...   # the same, with benchmarks/results/transfer_table/
                                             # as the default output
    python benchmarks/deep_table.py ...      # the CNN learner, large batches (issue 15)

Regimes (metaal.evaluate.REGIMES): balanced-k5 (the transfer table's tasks), imbalanced-k5
(the pool a long tail, commonest / rarest class = 10; evaluation balanced), balanced-k50 and
imbalanced-k50 (a pool of 2000 labeled 50 at a time; k=20 on the largest pool a smaller
target holds). A target that cannot hold a regime is listed under `skipped`. Without
`--policy`, the policy is the shipped one matched to `--learner` (`linear` for the default
logreg); `--learner` with an explicit `--policy` runs every cell with that learner (e.g.
`cnn`), warns when it is not the policy's own, and table.json records the pairing
(`policy_pairing`). `--extra-policy` runs more checkpoints beside the policy, on the same
episodes.

In each (target, regime) cell the policy (with its default sequential selection; also top-k
as policy_topk with --topk-policy) and every simulation-free baseline run on the same
seeded episodes, and in the k5 regimes the three lookahead references too (oracle, pool
oracle, expected gain, each choosing among 16 random candidates per round; at k=50 they
would cost ten times the rest of the grid). Seeds start at 30000, a range no training,
validation or choice between attempts has used (attempts use the development range,
--seed-offset 10000; the first report range, 20000, was spent on choosing sequential
selection). Each cell is an independent job written atomically to
OUT/cells/TARGET__REGIME.json; a rerun skips the finished cells (of the same settings and the
same policy file, by its sha256: it refuses cells written with other ones), so an interrupted
grid resumes. `--jobs N` runs N
cells at a time, each with cores / N torch threads.

Then OUT/table.json: `cells`, one entry per (target, regime, strategy) with `aulc_mean`,
`aulc_norm_random` (mean AULC / random's on the same seeds), `delta_vs_margin`, `ci95`, `p`
(two-sided Wilcoxon signed-rank), `p_holm` (Holm over every comparison with margin in the
table), `wins`/`ties`/`losses`, `rank` (within the cell, references excluded); `ranks` (per
regime, the average rank of each strategy over its targets), `critical_difference` and
`friedman_p` per regime. OUT/table.md, and OUT/cd_REGIME.png (critical-difference diagrams).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import torch
from scipy.stats import rankdata

from metaal import __version__
from metaal.data import load_dataset
from metaal.device import keep_freed_memory, resolve_device
from metaal.errors import InputError, OutputExistsError, exits_cleanly
from metaal.evaluate import DEEP_TARGETS, REGIMES, REPORT_SEED_OFFSET, TARGETS, compare_strategies, regime_task
from metaal.learners import parse_learner
from metaal.limits import check_memory
from metaal.metrics import aulc, paired_comparison
from metaal.policy import PolicyStrategy, default_policy, load_policy, policy_learner, policy_pairing
from metaal.ranking import average_ranks, critical_difference, friedman_p_value, holm, paired_p_value, plot_cd_diagram
from metaal.registry import PLUGINS_HELP, load_plugins, load_plugins_from_argv
from metaal.strategies import make_strategy, simulation_free
from metaal.tracking import Tracker, add_wandb_flags, wandb_options
from metaal.zoo import policy_file

REFERENCES = ("oracle", "pool_oracle", "expected_gain")
# Settings added after cells were written: a cell without the key was written with this value.
# (Cells from before policy_selection was recorded ran the policy top-k.)
SETTING_DEFAULTS = {"policy_selection": "top-k", "topk_policy": False, "learner": None, "extra_policies": {}}
# Policy paths (recorded by earlier versions, or where the extra policies are read): the files'
# sha256 is what counts.
IGNORED_SETTINGS = ("policy", "extra_policy_paths")
ALL_TARGETS = {**TARGETS, **DEEP_TARGETS}


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data-root", default=None, help="dataset folder (default: $METAAL_DATA_ROOT)")
    p.add_argument("--policy", help="the policy to benchmark: a shipped policy's name (metaal policies) or a "
                                    "checkpoint (default: the shipped policy matched to --learner, else linear)")
    p.add_argument("--targets", default=",".join(TARGETS), help="comma-separated transfer-table targets (or "
                   f"deep-table ones: {', '.join(n for n in DEEP_TARGETS if n not in TARGETS)})")
    p.add_argument("--learner", help="the learner every cell runs, a name or a YAML mapping {name: NAME, option: "
                                     "value} (default: the one the policy was meta-trained with)")
    p.add_argument("--extra-policy", action="append", default=[], metavar="policy_NAME=PATH",
                   help="another policy checkpoint to run beside the policy, as strategy policy_NAME (repeatable)")
    p.add_argument("--regimes", default=",".join(REGIMES), help=f"comma-separated, from {', '.join(REGIMES)}")
    p.add_argument("--baselines", default=None, help="comma-separated (default: every simulation-free strategy)")
    p.add_argument("--seeds", type=int, default=50)
    p.add_argument("--seed-offset", type=int, default=REPORT_SEED_OFFSET,
                   help=f"first seed (default {REPORT_SEED_OFFSET}, the report range; 10000: development)")
    p.add_argument("--reference-candidates", type=int, default=16,
                   help="candidates per round of each lookahead reference (at least 2k); 0: no references")
    p.add_argument("--reference-regimes", default="balanced-k5,imbalanced-k5",
                   help="the regimes the references run in (at k=50 they would cost 10x the rest of the grid)")
    p.add_argument("--topk-policy", action="store_true",
                   help="also run the policy labeling its k highest scores at once (policy_topk); "
                        "'policy' picks a round's k one at a time (sequential selection)")
    p.add_argument("--jobs", type=int, default=1, help="cells run at once, in separate processes")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N | auto: where each cell's episodes, "
                                                   "learners and strategies run (default cpu)")
    p.add_argument("--out", required=True, help="output folder: cells/, table.json, table.md, cd_REGIME.png")
    p.add_argument("--table-only", action="store_true",
                   help="run nothing: write the table from the cells already finished in --out")
    p.add_argument("--plugins", help=PLUGINS_HELP)
    add_wandb_flags(p, mode="disabled")  # on: one W&B run per cell (e.g. under a sweep agent)
    args = p.parse_args(argv)
    for name, known in (("targets", ALL_TARGETS), ("regimes", REGIMES), ("reference_regimes", REGIMES)):
        unknown = [x for x in getattr(args, name).split(",") if x not in known]
        if unknown:
            p.error(f"unknown {name} {unknown}; known: {', '.join(known)}")
    if args.seeds < 2 or args.jobs < 1 or args.reference_candidates < 0:
        p.error("--seeds must be >= 2, --jobs >= 1, --reference-candidates >= 0")
    # Each cell records its seeds (a Python int and its JSON text: about 64 bytes each) and runs
    # them as one batch of episodes, which sample_batch bounds in its turn.
    check_memory(args.seeds, 64, f"--seeds {args.seeds}", "each cell runs its seeds as one batch: run fewer")
    if args.policy is None:
        args.policy = default_policy(parse_learner(args.learner) if args.learner else None)
    return args


def pairing(args) -> dict:
    """The policy and the learner the cells run with (warned about when they do not match)."""
    policy = load_policy(args.policy, device="cpu")
    learner = parse_learner(args.learner) if args.learner else policy_learner(policy)
    return policy_pairing(args.policy, policy, learner)


def settings(args) -> dict:
    """What a cell's numbers depend on: a finished cell is reused only under the same settings."""
    baselines = args.baselines.split(",") if args.baselines else simulation_free()
    paths = extra_policy_paths(args.extra_policy)
    return {"policy_sha256": sha256(policy_file(args.policy)),
            "learner": parse_learner(args.learner) if args.learner else None,
            "extra_policies": {name: sha256(policy_file(path)) for name, path in paths.items()},
            "extra_policy_paths": paths,
            "baselines": baselines, "seeds": list(range(args.seed_offset, args.seed_offset + args.seeds)),
            "reference_candidates": args.reference_candidates, "reference_regimes": args.reference_regimes.split(","),
            "plugins": args.plugins or "", "policy_selection": "sequential", "topk_policy": args.topk_policy}


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def extra_policy_paths(given: list[str]) -> dict[str, str]:
    """--extra-policy policy_NAME=PATH arguments as {strategy name: path}."""
    paths = {}
    for item in given:
        name, _, path = item.partition("=")
        if not (name.startswith("policy_") and name[7:].isidentifier() and path) or name in ("policy_topk", *paths):
            raise InputError(f"--extra-policy {item!r}: give policy_NAME=PATH, NAME a word other than topk, "
                             "each name once")
        paths[name] = path
    return paths


def run_cell(target: str, regime: str, setup: dict, policy: str, data_root, device: str, threads: int,
             path: Path, wandb: dict) -> str:
    """Run one cell and write it to `path`, as a W&B run of its own unless wandb["mode"] is
    disabled; returns a line saying how it went."""
    torch.set_num_threads(threads)
    keep_freed_memory()  # a spawned worker starts with malloc's defaults
    config = {"target": target, "regime": regime, **setup}
    with Tracker(config, path.parent.parent, job_type="grid-cell", **wandb) as tracker:
        cell = measure_cell(target, regime, setup, policy, data_root, resolve_device(device))
        write_atomically(path, cell)
        if "skipped" not in cell:
            scores = {name: float(np.mean(values)) for name, values in cell["aulc"].items()}
            tracker.set_summary({f"aulc/{name}": value for name, value in scores.items()} | {"seconds": cell["seconds"]}
                                | {f"delta_vs_margin/{name}": v - scores["margin"] for name, v in scores.items()})
        tracker.log_artifact(path, name=f"grid-cell-{target}__{regime}", type="grid-cell")
    status = f"skipped: {cell['skipped']}" if "skipped" in cell else f"{cell['seconds']:.0f} s"
    return f"{target:<28} {regime:<16} {status}"


def measure_cell(target: str, regime: str, setup: dict, policy_path: str, data_root, device) -> dict:
    """One (target, regime) cell: per-seed AULCs of every strategy, or why it is skipped."""
    load_plugins(setup["plugins"])
    policy = load_policy(policy_path, device=device)
    learner = setup.get("learner") or policy_learner(policy)
    base = ALL_TARGETS[target].replace(learner=learner)
    task, reason = regime_task(base, regime, load_dataset(base.dataset, data_root))
    cell = {"target": target, "regime": regime, "settings": setup, "metaal": __version__}
    if task is None:
        return cell | {"skipped": reason}
    strategies = {"policy": policy, **{name: make_strategy(name) for name in setup["baselines"]}}
    if setup["topk_policy"]:
        strategies["policy_topk"] = PolicyStrategy(policy.net, policy.info, sequential=False)
    strategies |= {name: load_policy(path, device=device) for name, path in setup["extra_policy_paths"].items()}
    if setup["reference_candidates"] and regime in setup["reference_regimes"]:
        candidates = max(setup["reference_candidates"], 2 * task.k)  # a choice among at least 2k
        strategies |= {name: make_strategy(name, n_candidates=candidates) for name in REFERENCES}
    start = time.perf_counter()
    result = compare_strategies(task, strategies, setup["seeds"], data_root, device, progress=False)
    curves = result.curves
    return cell | {"task": task.to_dict(), "spec": vars(result.spec) | {"pool_counts": result.spec.pool_counts},
                   "notes": result.notes, "seconds": round(time.perf_counter() - start, 1),
                   "seconds_per_strategy": result.seconds,
                   "aulc": {name: aulc(acc, curves.n_labeled).tolist() for name, acc in curves.accuracy.items()},
                   "final_accuracy": {name: acc[:, -1].tolist() for name, acc in curves.accuracy.items()}}


def grid_cells(args) -> list[tuple[str, str]]:
    """Every (target, regime) of the grid, in the order they run and are tabled."""
    return [(t, r) for t in args.targets.split(",") for r in args.regimes.split(",")]


def cell_path(out: Path, target: str, regime: str) -> Path:
    return out / "cells" / f"{target}__{regime}.json"


def finished(path: Path, setup: dict) -> bool:
    """True if `path` holds this cell under the same settings; refuses one written under others."""
    if not path.exists():
        return False
    try:
        stored = json.loads(path.read_text())["settings"]
    except (ValueError, KeyError) as e:
        raise InputError(f"{path} is not a finished cell ({e}); delete it to run the cell again") from None
    changed = sorted(key for key in (setup | stored).keys() - set(IGNORED_SETTINGS)
                     if stored.get(key, SETTING_DEFAULTS.get(key)) != setup.get(key, SETTING_DEFAULTS.get(key)))
    if changed:
        raise OutputExistsError(f"{path} was written with other settings ({', '.join(changed)}); use another "
                                "--out, or delete the folder's cells to start over")
    return True


def write_atomically(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data, indent=1) + "\n")
    os.replace(partial, path)  # a killed run leaves a .partial, never a half-written cell


def run_grid(args) -> list[dict]:
    out, setup = Path(args.out), settings(args)
    todo = grid_cells(args)
    pending = [(t, r) for t, r in todo if not finished(cell_path(out, t, r), setup)]
    print(f"{len(todo) - len(pending)} of {len(todo)} cells already finished; running {len(pending)} "
          f"with {args.jobs} job(s)", flush=True)
    threads = max(1, (os.cpu_count() or 1) // args.jobs)
    start = time.perf_counter()
    jobs = [(run_cell, t, r, setup, args.policy, args.data_root, args.device, threads, cell_path(out, t, r),
             {"mode": args.wandb_mode, **wandb_options(args, f"grid-{t}-{r}")}) for t, r in pending]
    if args.jobs == 1:  # in this process (e.g. one cell per sweep run)
        for function, *arguments in jobs:
            print(function(*arguments), flush=True)
    else:
        # Workers start afresh (spawn): a child forked after torch's OpenMP threads ran can
        # deadlock in its first parallel op, and CUDA cannot be used in a forked child at all.
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            for future in as_completed([pool.submit(*job) for job in jobs]):
                print(future.result(), flush=True)
    print(f"grid: {time.perf_counter() - start:.0f} s for {len(pending)} cells", flush=True)
    return [json.loads(cell_path(out, t, r).read_text()) for t, r in todo]


def cell_rows(cell: dict) -> list[dict]:
    """The table's entries of one finished cell: each strategy against margin on the same seeds."""
    scores = {name: np.asarray(values) for name, values in cell["aulc"].items()}
    margin, random = scores["margin"], scores.get("random")
    ranked = [name for name in scores if name not in REFERENCES]
    rank = dict(zip(ranked, rankdata([-scores[name].mean() for name in ranked]).tolist()))
    rows = []
    for name, a in scores.items():
        c = paired_comparison(a, margin, name, "margin")
        versus = name != "margin"
        rows.append({"target": cell["target"], "regime": cell["regime"], "strategy": name, "seeds": len(a),
                     "aulc_mean": float(a.mean()),
                     "aulc_norm_random": float(a.mean() / random.mean()) if random is not None else None,
                     "delta_vs_margin": c.mean_difference, "ci95": [c.ci_low, c.ci_high] if versus else None,
                     "p": paired_p_value(a, margin) if versus else None, "p_holm": None,
                     "wins": c.wins, "ties": c.ties, "losses": c.losses, "rank": rank.get(name)})
    return rows


def regime_ranks(rows: list[dict], regime: str) -> dict:
    """Average rank of each strategy over the regime's targets (those where all of them ran),
    with the Nemenyi critical difference and Friedman's p-value."""
    rows = [r for r in rows if r["regime"] == regime and r["rank"] is not None]
    targets = sorted({r["target"] for r in rows})
    names = sorted({r["strategy"] for r in rows})
    means = {(r["target"], r["strategy"]): r["aulc_mean"] for r in rows}
    complete = [t for t in targets if all((t, n) in means for n in names)]
    if not complete:
        return {}
    scores = np.array([[means[t, n] for n in names] for t in complete])
    ranks = average_ranks(scores)
    return {"targets": complete, "ranks": dict(zip(names, ranks.tolist())),
            "critical_difference": critical_difference(len(names), len(complete)),
            "friedman_p": friedman_p_value(scores)}


def write_table(cells: list[dict], out: Path, command: str, paired: dict | None = None) -> str:
    """table.json, table.md and one critical-difference diagram per regime; returns the markdown."""
    done = [c for c in cells if "skipped" not in c]
    rows = [row for cell in done for row in cell_rows(cell)]
    family = [r for r in rows if r["p"] is not None and r["strategy"] not in REFERENCES]
    for row, adjusted in zip(family, holm([r["p"] for r in family])):
        row["p_holm"] = adjusted
    regimes = {r: regime_ranks(rows, r) for r in dict.fromkeys(c["regime"] for c in done)}
    for regime, summary in regimes.items():
        if summary:
            names = list(summary["ranks"])
            plot_cd_diagram(names, list(summary["ranks"].values()), summary["critical_difference"],
                            out / f"cd_{regime}.png", title=f"{regime}: average rank over "
                            f"{len(summary['targets'])} targets (Nemenyi CD, alpha 0.05)")
    for regime, summary in regimes.items():
        summary["versus_margin"] = {name: versus_margin(rows, regime, name) for name in summary.get("ranks", {})
                                    if name != "margin"}
    table = {"command": command, "policy_pairing": paired, "cells": rows,
             "ranks": {r: s.get("ranks") for r, s in regimes.items()},
             "regimes": regimes, "skipped": [{"target": c["target"], "regime": c["regime"], "why": c["skipped"]}
                                             for c in cells if "skipped" in c],
             "seconds": sum(c["seconds"] for c in done), "settings": done[0]["settings"] if done else None}
    write_atomically(out / "table.json", table)
    markdown = table_markdown(rows, regimes, table["skipped"])
    (out / "table.md").write_text(markdown)
    return markdown


def versus_margin(rows: list[dict], regime: str, strategy: str, alpha: float = 0.05) -> dict | None:
    """One strategy against margin over a regime's targets: the mean paired difference, the
    targets where it is significantly above or below (Holm-adjusted p < alpha), and, where the
    pool oracle ran, the share of the margin-to-pool-oracle gap it closes (summed over targets)."""
    cells = {r["target"]: r for r in rows if r["regime"] == regime and r["strategy"] == strategy}
    if not cells:
        return None
    oracle = {r["target"]: r for r in rows if r["regime"] == regime and r["strategy"] == "pool_oracle"}
    gap = sum(oracle[t]["delta_vs_margin"] for t in cells if t in oracle)
    return {"targets": len(cells), "mean_delta": float(np.mean([c["delta_vs_margin"] for c in cells.values()])),
            "above": sum(c["p_holm"] < alpha and c["delta_vs_margin"] > 0 for c in cells.values()),
            "below": sum(c["p_holm"] < alpha and c["delta_vs_margin"] < 0 for c in cells.values()),
            "pool_oracle_gap_closed": (sum(cells[t]["delta_vs_margin"] for t in cells if t in oracle) / gap
                                       if oracle and gap > 0 else None)}


def _verdict_line(name: str, v: dict) -> str:
    gap = f"; {v['pool_oracle_gap_closed']:+.0%} of the gap to the pool oracle" \
        if v["pool_oracle_gap_closed"] is not None else ""
    return (f"{name} vs margin: mean Δ {v['mean_delta']:+.4f}; significantly above on {v['above']}, below on "
            f"{v['below']} of {v['targets']} targets (Holm, 0.05){gap}.")


def table_markdown(rows: list[dict], regimes: dict, skipped: list[dict]) -> str:
    """Per regime: the policy and the best baseline against margin on each target, then the ranks."""
    lines = []
    for regime, summary in regimes.items():
        lines += [f"**{regime}**", "", "| target | margin | policy Δ [95% CI] | p (Holm) | W/T/L | best baseline Δ "
                  "| p (Holm) |", "|---|---|---|---|---|---|---|"]
        for target in dict.fromkeys(r["target"] for r in rows if r["regime"] == regime):
            cell = {r["strategy"]: r for r in rows if r["regime"] == regime and r["target"] == target}
            policy = cell["policy"]
            best = max((r for n, r in cell.items() if n not in ("margin", *REFERENCES) and not n.startswith("policy")),
                       key=lambda r: r["aulc_mean"], default=None)  # None: margin was the only baseline run
            best_columns = f"{best['strategy']} {_delta(best)} | {best['p_holm']:.3f}" if best else "none run | "
            lines.append(f"| {target} | {cell['margin']['aulc_mean']:.4f} | {_delta(policy)} | "
                         f"{policy['p_holm']:.3f} | {policy['wins']}/{policy['ties']}/{policy['losses']} | "
                         f"{best_columns} |")
        lines.append("")
        if summary:
            ranks = sorted(summary["ranks"].items(), key=lambda item: item[1])
            best = next((name for name, _ in ranks if name != "margin" and not name.startswith("policy")), None)
            verdict = " ".join(_verdict_line(name, versus_margin(rows, regime, name))
                               for name in summary["ranks"] if name.startswith("policy"))
            if best:
                verdict += " " + _verdict_line(f"{best} (the best-ranked other baseline)",
                                               versus_margin(rows, regime, best))
            lines += [f"Average rank over {len(summary['targets'])} targets (CD "
                      f"{summary['critical_difference']:.2f}, Friedman p {summary['friedman_p']:.2g}): "
                      + ", ".join(f"{name} {rank:.2f}" for name, rank in ranks) + ".", "", verdict, ""]
    if skipped:
        lines.append("Not run: " + "; ".join(f"{s['target']} {s['regime']} ({s['why']})" for s in skipped))
    return "\n".join(lines) + "\n"


def _delta(row: dict) -> str:
    low, high = row["ci95"]
    return f"{row['delta_vs_margin']:+.4f} [{low:+.4f}, {high:+.4f}]"


def finished_cells(args) -> list[dict]:
    """The cells of the grid that --out already holds (under these settings), in grid order."""
    out, setup = Path(args.out), settings(args)
    todo = grid_cells(args)
    done = [cell_path(out, t, r) for t, r in todo if finished(cell_path(out, t, r), setup)]
    print(f"table from the {len(done)} of {len(todo)} cells finished in {out}", flush=True)
    return [json.loads(path.read_text()) for path in done]


def with_defaults(argv: list[str], defaults: dict[str, str]) -> tuple[str, ...]:
    """The flags of `defaults` ({flag: value}) that `argv` does not give, for a wrapper's main."""
    given = {arg.split("=")[0] for arg in argv}
    return tuple(part for flag, value in defaults.items() if flag not in given for part in (flag, value))


@exits_cleanly
def main(argv: list[str] | None = None, command: str = "metaal grid", defaults: tuple[str, ...] = ()) -> int:
    """`defaults`: flags a wrapper adds (left out of the command recorded in table.json)."""
    argv = sys.argv[1:] if argv is None else list(argv)
    load_plugins_from_argv(argv)
    keep_freed_memory()
    args = parse_args([*argv, *defaults])
    paired = pairing(args)
    cells = finished_cells(args) if args.table_only else run_grid(args)
    print(write_table(cells, Path(args.out), command=" ".join([command, *argv]), paired=paired))
    return 0


if __name__ == "__main__":
    sys.exit(main())
