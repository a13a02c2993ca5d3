"""The README's "pieces" and "active-learn" examples and the guide's "embeddings" one run as written (the
README's own-loop one runs in test_deploy.py)."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_example(name: str, monkeypatch, data_root, cwd: Path = REPO, doc: str = "README.md") -> dict:
    readme = (REPO / doc).read_text()
    code = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)```", readme, re.S).group(1)
    monkeypatch.setenv("METAAL_DATA_ROOT", str(data_root))
    monkeypatch.chdir(cwd)
    namespace = {}
    exec(compile(code, doc, "exec"), namespace)
    return namespace


def test_readme_pieces_example_runs(monkeypatch, data_root):
    namespace = run_example("pieces", monkeypatch, data_root)
    result, task = namespace["result"], namespace["task"]
    assert result.accuracy.shape == (4, task.rounds + 1)
    assert result.n_labeled[-1] == 5 + task.rounds * task.k   # 1 initial label per class, then k per round
    assert namespace["notes"] == []                            # fashion_mnist is large enough: nothing capped


def test_readme_active_learn_example_runs(monkeypatch, data_root):
    history = run_example("active-learn", monkeypatch, data_root, doc="docs/guide.md")["history"]
    assert history.n_labeled == [20, 40, 60, 80, 100]
    assert len(history.accuracy) == 5 and history.accuracy[-1] > history.accuracy[0]
    picked = [i for r in history.rounds[:-1] for i in r["picked"]]
    assert len(set(history.labeled.tolist())) == 100 and set(picked) <= set(history.labeled.tolist())


def test_readme_embeddings_example_runs(monkeypatch, data_root, tmp_path):
    namespace = run_example("embeddings", monkeypatch, data_root, cwd=tmp_path, doc="docs/guide.md")
    picked = namespace["picked"]
    assert picked.shape == (10,) and len(set(picked.tolist())) == 10 and picked.max() < len(namespace["pool_z"])
    saved = __import__("numpy").load(tmp_path / "embedded.npz")
    assert saved["X"].shape == (10_000, 512) and saved["y"].shape == (10_000,)
