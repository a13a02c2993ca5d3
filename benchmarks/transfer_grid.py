"""The benchmark grid (`metaal grid`, metaal/commands/grid.py) with this repository's defaults:
benchmarks/results/transfer_table/ as the output (the policy: the shipped one matched to the
learner, as in `metaal grid`).

    python benchmarks/transfer_grid.py --data-root ../shared/data --jobs 2 [any `metaal grid` option]
"""

import sys
from pathlib import Path

from metaal.commands import grid

HERE = Path(__file__).resolve().parent
DEFAULTS = {"--out": str(HERE / "results" / "transfer_table")}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    return grid.main(argv, command="python benchmarks/transfer_grid.py", defaults=grid.with_defaults(argv, DEFAULTS))


if __name__ == "__main__":
    sys.exit(main())
