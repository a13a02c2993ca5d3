"""The code stays readable: no function in metaal/ runs past about 60 lines, and the folder
layout shows the pipeline."""

import ast

from tests.conftest import REPO

MAX_LINES = 60


def test_no_function_in_metaal_is_longer_than_60_lines():
    long = []
    for path in sorted((REPO / "metaal").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_LINES:
                    long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, "split these: " + ", ".join(long)


def test_the_folders_show_the_pipeline():
    names = {p.stem for p in (REPO / "metaal").iterdir() if not p.name.startswith("_")}
    assert {"data", "learners", "features", "strategies", "policy", "trainers", "evaluate", "deploy"} <= names
