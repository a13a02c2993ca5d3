"""Refresh the tables RESULTS.md shows from the committed benchmark outputs, so they cannot drift.

    python benchmarks/render_results.py          # rewrite RESULTS.md's included tables
    python benchmarks/render_results.py --check  # exit 1 if any differs from its file (the tests run this)

Every table in RESULTS.md that a benchmark wrote sits between
`<!-- include: benchmarks/results/.../table.md -->` and `<!-- end include -->`: the lines in
between are the file's content, verbatim.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BLOCK = re.compile(r"(<!-- include: (?P<path>\S+) -->\n)(?P<body>.*?)(<!-- end include -->)", re.S)


def render(text: str) -> str:
    def fill(match: re.Match) -> str:
        path = REPO / match["path"]
        if not path.is_file():
            sys.exit(f"error: RESULTS.md includes {match['path']}, which does not exist")
        return match.group(1) + path.read_text() + match.group(4)

    return BLOCK.sub(fill, text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if a table is out of date")
    parser.add_argument("--doc", default=str(REPO / "RESULTS.md"))
    args = parser.parse_args(argv)
    doc = Path(args.doc)
    text = doc.read_text()
    new = render(text)
    stale = [m["path"] for m, n in zip(BLOCK.finditer(text), BLOCK.finditer(new)) if m["body"] != n["body"]]
    if args.check:
        for path in stale:
            print(f"{doc.name}: the table from {path} is out of date; run python benchmarks/render_results.py")
        return 1 if stale else 0
    doc.write_text(new)
    print(f"{doc}: {len(stale)} table(s) refreshed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
