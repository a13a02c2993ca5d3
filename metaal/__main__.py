"""The `metaal` command (also `python -m metaal`): one subcommand per job.

    metaal meta-train --config default --data-root DIR [--out DIR] [--key value ...]
    metaal transfer --dataset NAME --out DIR [--policy NAME_OR_PATH] [...]
    metaal grid --data-root DIR [--jobs N] [...]
    metaal data [NAMES] [--data-root DIR]
    metaal policies [NAMES] [--json]

`metaal COMMAND --help` lists each one's options.
"""

from __future__ import annotations

import importlib
import sys

from metaal import __version__

# subcommand -> (module with main(argv), one line of help); imported only when run
COMMANDS = {
    "meta-train": ("metaal.commands.meta_train", "meta-train a query policy on episodic class-subset tasks"),
    "transfer": ("metaal.commands.transfer", "evaluate a frozen policy on a dataset it never saw, against baselines"),
    "grid": ("metaal.commands.grid", "the benchmark grid: every target in every regime, 50 report seeds"),
    "data": ("metaal.commands.data", "list the datasets in the data root and check that each loads"),
    "policies": ("metaal.commands.policies", "list the policies shipped inside metaal, each with its learner"),
}


def usage() -> str:
    rows = "\n".join(f"  {name:<12}{text}" for name, (_, text) in COMMANDS.items())
    return f"usage: metaal COMMAND [options]   (metaal {__version__})\n\ncommands:\n{rows}\n\n" \
           "Run `metaal COMMAND --help` for the options of one."


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        return 0
    if argv[0] == "--version":
        print(f"metaal {__version__}")
        return 0
    if argv[0] not in COMMANDS:
        print(f"metaal: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[argv[0]][0])
    sys.argv[0] = f"metaal {argv[0]}"  # so argparse's usage lines name the subcommand
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
