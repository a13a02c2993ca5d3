"""The transfer table: does the frozen policy beat margin sampling on datasets it never saw?

    python benchmarks/transfer_table.py --data-root ../shared/data [--policy PATH] [--seeds 20] \
        [--datasets name,...] [--note "what changed"] [--policy-selection sequential|top-k]

For every held-out target below, the policy, the baselines and three one-step lookahead
references run on the same seeded episodes (seeds 10000.., never used in meta-training or
validation). Each labels the candidates (64 random ones per round) whose label raises
accuracy most: "oracle" measures that on the evaluation set the table reports (it knows the
labels and fits its test samples), "pool_oracle" on the pool's own true labels (it never
sees a test sample, but knows each candidate's label), "expected_gain" averages it over the
model's belief about the label (label-free, like any real strategy). "Gap closed" is the
share of an oracle's lead over margin that the policy closes.

Writes to --out (default benchmarks/results/transfer_table_dev/): table.json (per target: AULC
per strategy, paired comparisons of the policy, gap closed; and the aggregate) and table.md,
and appends the aggregate with --note to --history (default: that folder's history.json, shared by every
attempt, whatever its --out), so every attempt's result is kept.

Targets: image sets in 5-way episodes (pool 500, k=5, 20 rounds); Omniglot's Sanskrit and
Tagalog alphabets (kept out of meta-training by convention; 5-way, pool 70, k=5, 10 rounds);
the tabular sets in binary episodes (pool up to 200, k=2, 15 rounds). MNIST digits 5-9 were
the default policy's validation classes: held out of training, but used to pick the
checkpoint, so that row is marked. The committed table and every attempt in its history ran
the policy top-k (before sequential selection became the default): --policy-selection top-k
reproduces them.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
from pathlib import Path

import numpy as np
import torch

from metaal import __version__
from metaal.data import TaskSpec
from metaal.errors import exits_cleanly
from metaal.evaluate import TABLE_SEED_OFFSET, TARGETS, compare_strategies
from metaal.learners import learner_spec
from metaal.metrics import aulc, summarize, write_summary_json
from metaal.outputs import check_output_dir
from metaal.policy import SELECTIONS, load_policy
from metaal.registry import PLUGINS_HELP, load_plugins_from_argv
from metaal.strategies import make_strategy

HERE = Path(__file__).parent
BASELINES = "margin,entropy,least_confidence,bald,coreset,badge,random"
ORACLES = {"oracle": "gap_closed", "pool_oracle": "gap_closed_pool"}  # oracle -> its gap-closed key
REFERENCES = (*ORACLES, "expected_gain")  # the lookahead references: not baselines
NOTES = {"mnist_digits_5-9": "validation classes of the default policy"}  # marked * in the table


def run_target(task: TaskSpec, policy, baselines: list[str], n_seeds: int, oracle_candidates: int,
               data_root, progress: bool, note: str = "") -> dict:
    seeds = list(range(TABLE_SEED_OFFSET, TABLE_SEED_OFFSET + n_seeds))
    strategies = {"policy": policy, **{name: make_strategy(name) for name in baselines}}
    if oracle_candidates:
        strategies |= {name: make_strategy(name, n_candidates=oracle_candidates) for name in REFERENCES}
    result = compare_strategies(task, strategies, seeds, data_root, progress=progress)
    curves = result.curves
    summary = summarize(curves, reference="policy")
    scores = {name: float(aulc(acc, curves.n_labeled).mean()) for name, acc in curves.accuracy.items()}
    for oracle, key in ORACLES.items():
        closable = oracle in scores and "margin" in scores and scores[oracle] > scores["margin"]
        summary[key] = (scores["policy"] - scores["margin"]) / (scores[oracle] - scores["margin"]) if closable else None
    summary["target"] = task.to_dict() | {"seed_offset": TABLE_SEED_OFFSET, "spec": vars(result.spec)}
    summary["note"] = note
    summary["warnings"] = result.notes
    summary["seconds_per_strategy"] = result.seconds
    return summary


def aggregate(results: dict[str, dict]) -> dict:
    vs_margin = {name: next(c for c in r["comparisons"] if c["baseline"] == "margin") for name, r in results.items()}

    def mean_gap(key):
        gaps = [r[key] for r in results.values() if r.get(key) is not None]
        return float(np.mean(gaps)) if gaps else None

    def reference_vs_margin(name):
        diffs = [r["strategies"][name]["aulc_mean"] - r["strategies"]["margin"]["aulc_mean"]
                 for r in results.values() if name in r["strategies"]]
        return {"above_margin": sum(d > 0 for d in diffs), "mean_difference": float(np.mean(diffs))} if diffs else None

    return {
        "targets": len(results),
        "policy_above_margin": sum(c["mean_difference"] > 0 for c in vs_margin.values()),
        "policy_significantly_above_margin": sum(c["ci_low"] > 0 for c in vs_margin.values()),
        "policy_significantly_below_margin": sum(c["ci_high"] < 0 for c in vs_margin.values()),
        "mean_difference_vs_margin": float(np.mean([c["mean_difference"] for c in vs_margin.values()])),
        **{f"mean_{key}": mean_gap(key) for key in ORACLES.values()},
        "references_vs_margin": {name: reference_vs_margin(name) for name in REFERENCES},
    }


def markdown(results: dict[str, dict], agg: dict) -> str:
    def number(value, form, empty=""):
        return empty if value is None else format(value, form)

    head = ("| target | policy | margin | Δ vs margin [95% CI] | W/T/L | oracle | gap closed | pool oracle "
            "| gap closed (pool) | expected gain | best baseline |")
    lines = [head, "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        st = r["strategies"]
        c = next(c for c in r["comparisons"] if c["baseline"] == "margin")
        oracles = " | ".join(f"{number(st.get(o, {}).get('aulc_mean'), '.4f')} | {number(r.get(key), '+.2f')}"
                             for o, key in ORACLES.items())
        best = max((s for s in st if s != "policy" and s not in REFERENCES), key=lambda s: st[s]["aulc_mean"])
        mark = " *" if r["note"] else ""
        lines.append(f"| {name}{mark} | {st['policy']['aulc_mean']:.4f} ± {st['policy']['aulc_std']:.4f} | "
                     f"{st['margin']['aulc_mean']:.4f} | {c['mean_difference']:+.4f} "
                     f"[{c['ci_low']:+.4f}, {c['ci_high']:+.4f}] | {c['wins']}/{c['ties']}/{c['losses']} | "
                     f"{oracles} | {number(st.get('expected_gain', {}).get('aulc_mean'), '.4f')} | "
                     f"{best} {st[best]['aulc_mean']:.4f} |")
    lines.append("")
    lines.append(f"Policy above margin on {agg['policy_above_margin']}/{agg['targets']} targets "
                 f"({agg['policy_significantly_above_margin']} significantly; "
                 f"{agg['policy_significantly_below_margin']} significantly below); mean paired AULC difference "
                 f"{agg['mean_difference_vs_margin']:+.4f}; mean share of the margin-oracle gap closed "
                 f"{number(agg['mean_gap_closed'], '+.2f', 'n/a')} (test-set oracle), "
                 f"{number(agg['mean_gap_closed_pool'], '+.2f', 'n/a')} (pool oracle).")
    references = [f"{name} {v['mean_difference']:+.4f} (above margin on {v['above_margin']}/{agg['targets']})"
                  for name, v in agg["references_vs_margin"].items() if v is not None]
    if references:
        lines.append(f"Mean AULC difference to margin of the lookahead references: {'; '.join(references)}.")
    if any(r["note"] for r in results.values()):
        lines.append("\\* " + "; ".join(f"{n}: {r['note']}" for n, r in results.items() if r["note"]))
    return "\n".join(lines) + "\n"


@exits_cleanly
def main(argv=None):
    load_plugins_from_argv(argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--policy", default="linear")
    parser.add_argument("--policy-selection", choices=SELECTIONS, default="sequential",
                        help="the policy's selection (the committed table's attempts ran top-k)")
    parser.add_argument("--datasets", default=",".join(TARGETS), help="comma-separated targets")
    parser.add_argument("--baselines", default=BASELINES)
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--oracle-candidates", type=int, default=64,
                        help="candidates per round of each lookahead reference; 0: no references")
    parser.add_argument("--rounds", type=int, default=None, help="override every target's rounds (quick runs)")
    parser.add_argument("--note", default="", help="what changed since the last attempt (kept in history.json)")
    parser.add_argument("--out", default=str(HERE / "results" / "transfer_table_dev"))
    parser.add_argument("--history", default=str(HERE / "results" / "transfer_table_dev" / "history.json"),
                        help="JSON list every run appends its aggregate to (one history for all attempts)")
    parser.add_argument("--overwrite", action="store_true", help="replace the table.json and table.md in --out")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--plugins", help=PLUGINS_HELP)
    args = parser.parse_args(argv)

    unknown = [d for d in args.datasets.split(",") if d not in TARGETS]
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {', '.join(TARGETS)}")
    out = check_output_dir(args.out, args.overwrite, writes=("table.json", "table.md"))
    policy = load_policy(args.policy, device="cpu", sequential=args.policy_selection == "sequential")
    results = {}
    for name in args.datasets.split(","):
        task = TARGETS[name].replace(learner=learner_spec(policy.info["learner"] or "logreg"))  # as trained
        task = task if args.rounds is None else task.replace(rounds=args.rounds)
        results[name] = run_target(task, policy, args.baselines.split(","), args.seeds, args.oracle_candidates,
                                   args.data_root, not args.no_progress, NOTES.get(name, ""))
        c = next(c for c in results[name]["comparisons"] if c["baseline"] == "margin")
        print(f"{name:<28} policy - margin {c['mean_difference']:+.4f} [{c['ci_low']:+.4f}, {c['ci_high']:+.4f}]",
              flush=True)
    agg = aggregate(results)
    out.mkdir(parents=True, exist_ok=True)
    config = vars(args) | {"metaal": __version__, "torch": torch.__version__}
    write_summary_json({"aggregate": agg, "targets": results, "config": config}, out / "table.json")
    table = markdown(results, agg)
    (out / "table.md").write_text(table)
    history_path = Path(args.history)
    history = json.loads(history_path.read_text()) if history_path.exists() else []
    history.append({"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                    "note": args.note, "policy": args.policy, "table": str(out), "seeds": args.seeds,
                    "targets": list(results),
                    "aggregate": agg})
    history_path.write_text(json.dumps(history, indent=2) + "\n")
    print(table)


if __name__ == "__main__":
    sys.exit(main())
