"""The README's "pieces" example runs as written (the own-loop one runs in test_deploy.py)."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_readme_pieces_example_runs(monkeypatch, data_root):
    readme = (REPO / "README.md").read_text()
    code = re.search(r"<!-- example: pieces -->\n```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.setenv("METAAL_DATA_ROOT", str(data_root))
    namespace = {}
    exec(compile(code, "README.md", "exec"), namespace)
    result, task = namespace["result"], namespace["task"]
    assert result.accuracy.shape == (4, task.rounds + 1)
    assert result.n_labeled[-1] == 5 + task.rounds * task.k   # 1 initial label per class, then k per round
    assert namespace["notes"] == []                            # fashion_mnist is large enough: nothing capped
