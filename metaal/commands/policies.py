"""List the policies that ship inside metaal: what each is for, the learner it was meta-trained
with, the features it reads, the config that trains it, its file, and its benchmark result.

    metaal policies [NAME ...] [--json]

Load one by name: `metaal.load_policy("linear")`, or `--policy linear` on any command.
"""

from __future__ import annotations

import argparse
import json
import sys

from metaal.errors import exits_cleanly
from metaal.policy import load_policy
from metaal.zoo import SHIPPED, shipped


def describe(name: str) -> dict:
    """One shipped policy, as `metaal policies` shows it: read from its checkpoint and its entry."""
    entry = shipped(name)
    policy = load_policy(name, device="cpu")
    schema = policy.schema
    return {"name": name, "purpose": entry.purpose, "learner": policy.info["learner"],
            "feature_schema": {"version": schema.version, "names": list(schema.names)},
            "config": f"metaal/configs/{entry.config}.yaml", "command": entry.command,
            "file": str(entry.path), "size_bytes": entry.path.stat().st_size, "sha256": entry.sha256,
            "benchmark": entry.benchmark, "metaal_version": policy.info.get("metaal_version")}


def _block(d: dict) -> str:
    learner = d["learner"]
    options = ", ".join(f"{k}: {v}" for k, v in learner.items() if k != "name")
    features = d["feature_schema"]
    return "\n".join([
        f"{d['name']}: {d['purpose']}",
        f"  learner    {learner['name']} ({options})",
        f"  features   schema v{features['version']}, {len(features['names'])}: {', '.join(features['names'])}",
        f"  trained by {d['command']}   ({d['config']})",
        f"  file       {d['file']}, {d['size_bytes'] / 1000:.1f} kB",
        f"  sha256     {d['sha256']}",
        f"  benchmark  {d['benchmark']}",
    ])


@exits_cleanly
def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("names", nargs="*", help=f"the policies to show (default: all: {', '.join(SHIPPED)})")
    p.add_argument("--json", action="store_true", help="print them as a JSON list")
    args = p.parse_args(argv)
    described = [describe(name) for name in args.names or SHIPPED]
    print(json.dumps(described, indent=1) if args.json else "\n\n".join(_block(d) for d in described))
    return 0


if __name__ == "__main__":
    sys.exit(main())
