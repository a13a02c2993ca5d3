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


def run_python(code: str) -> str:
    import subprocess
    import sys

    return subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=REPO).stdout


def test_import_metaal_and_select_stay_light():
    """A user who only queries with a policy pays for neither learn2learn, W&B nor the trainers."""
    heavy = "sorted(m for m in sys.modules if m.split('.')[0] in ('learn2learn', 'wandb') or m == 'metaal.trainers')"
    out = run_python(f"import sys, metaal; print({heavy}); metaal.select; print({heavy}); print(metaal.TaskSpec)")
    assert out.splitlines()[:2] == ["[]", "[]"] and "TaskSpec" in out.splitlines()[2]


def test_no_library_function_switches_the_matplotlib_backend(tmp_path):
    out = run_python("import matplotlib; matplotlib.use('svg'); from metaal.ranking import plot_cd_diagram; "
                     f"plot_cd_diagram(['a', 'b', 'c'], [1.2, 2.0, 2.8], 1.0, r'{tmp_path / 'cd.png'}'); "
                     "print(matplotlib.get_backend())")
    assert out.strip() == "svg" and (tmp_path / "cd.png").stat().st_size > 1000
