"""A reduced benchmark grid (2 targets, 2 regimes, 3 seeds): a test of the pipeline, not of
the numbers; and the regimes' tasks on real targets."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from metaal.data import load_dataset
from metaal.errors import InputError
from metaal.evaluate import TARGETS, regime_task
from tests.conftest import REPO, load_benchmark

CELL_FIELDS = {"target", "regime", "strategy", "seeds", "aulc_mean", "aulc_norm_random", "delta_vs_margin", "ci95",
               "p", "p_holm", "wins", "ties", "losses", "rank"}



def test_reduced_grid_runs_resumes_and_refuses_other_settings(tmp_path, data_root, capsys):
    grid = load_benchmark("transfer_grid")  # the repository wrapper of `metaal grid`
    args = ["--data-root", str(data_root), "--targets", "heart,checkerboard2x2", "--regimes",
            "balanced-k5,imbalanced-k50", "--seeds", "3", "--reference-candidates", "4", "--out", str(tmp_path)]
    assert grid.main([*args, "--jobs", "2"]) in (None, 0)
    table = json.loads((tmp_path / "table.json").read_text())
    assert table["skipped"] == [{"target": "heart", "regime": "imbalanced-k50", "why": table["skipped"][0]["why"]}]
    cells = table["cells"]
    assert all(CELL_FIELDS <= set(c) for c in cells)
    assert {(c["target"], c["regime"]) for c in cells} == {("heart", "balanced-k5"), ("checkerboard2x2", "balanced-k5"),
                                                          ("checkerboard2x2", "imbalanced-k50")}
    strategies = {c["strategy"] for c in cells}
    assert {"policy", "margin", "random", "typiclust", "probcover", "cluster_margin", "oracle"} <= strategies
    tested = [c for c in cells if c["p_holm"] is not None]
    assert tested and all(c["p_holm"] >= c["p"] for c in tested)
    assert all(c["rank"] is None for c in cells if c["strategy"] == "oracle")  # references are not ranked
    assert set(table["ranks"]["balanced-k5"]) == strategies - {"oracle", "pool_oracle", "expected_gain"}
    large = json.loads((tmp_path / "cells" / "checkerboard2x2__imbalanced-k50.json").read_text())
    assert large["task"]["k"] == 20 and large["spec"]["pool_counts"][0] >= 9 * large["spec"]["pool_counts"][-1]
    assert (tmp_path / "cd_balanced-k5.png").exists() and "**imbalanced-k50**" in (tmp_path / "table.md").read_text()
    verdict = table["regimes"]["balanced-k5"]["versus_margin"]["policy"]
    policy_rows = [c for c in cells if c["regime"] == "balanced-k5" and c["strategy"] == "policy"]
    assert verdict["targets"] == 2 and verdict["above"] + verdict["below"] <= 2
    assert verdict["mean_delta"] == pytest.approx(sum(c["delta_vs_margin"] for c in policy_rows) / 2)
    assert "policy vs margin: mean Δ" in (tmp_path / "table.md").read_text()

    stamps = {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cells").iterdir()}
    capsys.readouterr()
    grid.main(args)                                  # a rerun skips every finished cell
    assert "4 of 4 cells already finished; running 0" in capsys.readouterr().out
    assert stamps == {p.name: p.stat().st_mtime_ns for p in (tmp_path / "cells").iterdir()}
    (tmp_path / "cells" / "heart__balanced-k5.json").unlink()   # as if the grid had been stopped early
    grid.main([*args, "--table-only"])
    assert "table from the 3 of 4 cells finished" in capsys.readouterr().out
    assert {c["target"] for c in json.loads((tmp_path / "table.json").read_text())["cells"]} == {"checkerboard2x2"}
    assert grid.main([*args[:-2], "--seeds", "4", "--out", str(tmp_path)]) == 2  # other settings: refused
    assert "was written with other settings (seeds)" in capsys.readouterr().err


@pytest.mark.parametrize("target, regime, expected", [
    ("fashion_mnist", "balanced-k50", dict(pool=2000, k=50)),
    ("kmnist", "imbalanced-k50", dict(k=20)),          # 750 images per class cannot hold the long tail of 2000
    ("omniglot_sanskrit_tagalog", "balanced-k50", None),
    ("heart", "imbalanced-k5", dict(k=2)),
])
def test_regime_tasks(data_root, target, regime, expected):
    base = TARGETS[target]
    task, why = regime_task(base, regime, load_dataset(base.dataset, data_root))
    if expected is None:
        assert task is None and "fewer than" in why
        return
    spec, _ = task.episode_spec(load_dataset(base.dataset, data_root))
    assert task.k == expected["k"] and spec.pool_size == expected.get("pool", spec.pool_size)
    assert task.imbalance == (10.0 if regime.startswith("imbalanced") else 1.0)


def test_topk_policy_variant_is_a_setting_of_its_own(tmp_path, data_root, capsys):
    grid = load_benchmark("transfer_grid")
    args = ["--data-root", str(data_root), "--targets", "heart", "--regimes", "balanced-k5", "--seeds", "3",
            "--reference-candidates", "0", "--baselines", "margin,random", "--out", str(tmp_path)]
    assert grid.main([*args, "--topk-policy"]) == 0
    table = json.loads((tmp_path / "table.json").read_text())
    assert {c["strategy"] for c in table["cells"]} == {"policy", "policy_topk", "margin", "random"}
    assert "policy_topk vs margin" in (tmp_path / "table.md").read_text()
    assert grid.main(args) == 2 and "other settings (topk_policy)" in capsys.readouterr().err


def test_cells_of_the_topk_policy_era_are_refused(tmp_path, data_root, capsys):
    """A cell written before sequential selection became the default ran 'policy' top-k: it
    records no policy_selection, and must not pass for a cell of today's 'policy'."""
    grid = load_benchmark("transfer_grid")
    args = ["--data-root", str(data_root), "--targets", "heart", "--regimes", "balanced-k5", "--seeds", "3",
            "--reference-candidates", "0", "--baselines", "margin,random", "--out", str(tmp_path)]
    assert grid.main(args) == 0
    path = tmp_path / "cells" / "heart__balanced-k5.json"
    cell = json.loads(path.read_text())
    del cell["settings"]["policy_selection"]
    path.write_text(json.dumps(cell))
    assert grid.main(args) == 2 and "other settings (policy_selection)" in capsys.readouterr().err


def test_the_committed_grid_table_is_what_its_cells_say(tmp_path, data_root):
    """benchmarks/results/transfer_table/: 50 report seeds in every cell, the fields the issue
    names, and a table that --table-only rebuilds from the committed cells exactly."""
    committed = load_benchmark("transfer_grid").HERE / "results" / "transfer_table"
    table = json.loads((committed / "table.json").read_text())
    assert all(CELL_FIELDS <= set(c) and c["seeds"] == 50 for c in table["cells"])
    assert table["settings"]["seeds"] == list(range(30000, 30050))
    assert set(table["ranks"]) == {"balanced-k5", "imbalanced-k5", "balanced-k50", "imbalanced-k50"}
    shutil.copytree(committed / "cells", tmp_path / "cells")
    grid = load_benchmark("transfer_grid")
    assert table["command"].endswith("--topk-policy")  # the grid's settings, which --table-only must repeat
    assert grid.main(["--data-root", str(data_root), "--table-only", "--topk-policy", "--out", str(tmp_path)]) == 0
    rebuilt = json.loads((tmp_path / "table.json").read_text())
    # Equal up to float rounding (the lowest numpy/scipy differ at 1e-9).
    assert close(rebuilt["cells"], table["cells"])
    assert close(rebuilt["ranks"], table["ranks"])
    assert (tmp_path / "table.md").read_text() == (committed / "table.md").read_text()


def close(a, b) -> bool:
    """Nested JSON values equal, floats to 1e-6 relative."""
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(close(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return isinstance(b, list) and len(a) == len(b) and all(close(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and isinstance(b, (int, float)):
        return b == pytest.approx(a, rel=1e-6, abs=1e-9)
    return a == b


def test_extra_policies_and_the_learner_are_settings_of_the_cells(tmp_path, data_root, capsys):
    """--extra-policy runs another checkpoint beside the policy (the same file: the same AULCs);
    --learner replaces the policy's learner in every cell; both are settings a rerun must match."""
    grid = load_benchmark("transfer_grid")
    policy = "linear"
    args = ["--data-root", str(data_root), "--targets", "heart", "--regimes", "balanced-k5", "--seeds", "3",
            "--reference-candidates", "0", "--baselines", "margin,random", "--out", str(tmp_path),
            "--learner", "{name: logreg, l2: 0.01}"]
    assert grid.main([*args, "--extra-policy", f"policy_again={policy}"]) == 0
    cell = json.loads((tmp_path / "cells" / "heart__balanced-k5.json").read_text())
    assert cell["task"]["learner"]["l2"] == 0.01
    assert cell["aulc"]["policy_again"] == cell["aulc"]["policy"]
    assert "policy_again vs margin" in (tmp_path / "table.md").read_text()
    assert grid.main(args) == 2 and "other settings (extra_policies)" in capsys.readouterr().err
    assert grid.main([*args, "--extra-policy", f"again={policy}"]) == 2
    assert "give policy_NAME=PATH" in capsys.readouterr().err


def test_deep_table_runs_the_cnn_learner_on_the_whole_omniglot_alphabets(tmp_path, data_root):
    """benchmarks/deep_table.py, shrunk to CPU size: the SmallCNN (one Adam step) in every
    strategy, BALD on its MC-dropout members, on all 59 held-out Omniglot characters (k=20)."""
    deep = load_benchmark("deep_table")
    assert deep.main(["--data-root", str(data_root), "--targets", "omniglot_sanskrit_tagalog_all", "--regimes",
                      "balanced-k50", "--seeds", "2", "--learner", "{name: cnn, steps: 1, mc_passes: 2}",
                      "--baselines", "margin,bald", "--out", str(tmp_path)]) == 0
    cell = json.loads((tmp_path / "cells" / "omniglot_sanskrit_tagalog_all__balanced-k50.json").read_text())
    assert cell["task"]["learner"]["name"] == "cnn" and cell["task"]["k"] == 20
    assert cell["spec"]["n_ways"] == 59 and sum(cell["spec"]["pool_counts"]) == 826
    assert set(cell["aulc"]) == {"policy", "margin", "bald"} and all(len(v) == 2 for v in cell["aulc"].values())


TARGETS4 = ("kmnist", "heart", "mushrooms", "fashion_mnist")
REGIMES4 = ("balanced-k5", "balanced-k50", "imbalanced-k5", "imbalanced-k50")


def write_cells(folder: Path, seed: int, shift: float = 0.0, skip=(("heart", "imbalanced-k50"),)) -> None:
    """A grid's cells/ as the grid writes them (target, regime, per-seed AULCs by strategy; a cell
    the target cannot hold is skipped), with made-up AULCs: 10 seeds of policy, policy_v2 and
    cluster_margin around a per-cell level, policy_v2 `shift` above policy on average."""
    rng = np.random.default_rng(seed)
    (folder / "cells").mkdir(parents=True)
    for target in TARGETS4:
        for regime in REGIMES4:
            cell = {"target": target, "regime": regime}
            if (target, regime) in skip:
                cell["skipped"] = "the pool cannot hold this regime"
            else:
                level = rng.uniform(0.6, 0.9)
                cell["aulc"] = {name: (level + offset + 0.01 * rng.standard_normal(10)).tolist()
                                for name, offset in (("policy", 0.0), ("policy_v2", shift),
                                                     ("cluster_margin", rng.normal(0, 0.01)))}
            (folder / "cells" / f"{target}__{regime}.json").write_text(json.dumps(cell))


def test_compare_policies_pairs_two_policies_cell_by_cell(tmp_path):
    compare = load_benchmark("compare_policies")
    grid = tmp_path / "grid"
    write_cells(grid, seed=0, shift=0.01)
    by_regime = compare.cell_differences(grid, "policy_v2", "policy")
    cell = json.loads((grid / "cells" / "kmnist__balanced-k50.json").read_text())
    aulc = {name: np.asarray(cell["aulc"][name]) for name in ("policy_v2", "policy")}
    assert (aulc["policy_v2"] - aulc["policy"]).mean() in by_regime["balanced-k50"]
    rows = compare.compare(by_regime, "policy_v2", "policy")
    assert rows["all"]["cells"] == 15 == sum(len(d) for d in by_regime.values())  # one cell skipped
    assert rows["all"]["mean_difference"] == pytest.approx(np.mean([d for v in by_regime.values() for d in v]))
    assert rows["imbalanced-k50"]["p_holm"] >= rows["imbalanced-k50"]["p"] and "p_holm" not in rows["all"]
    with pytest.raises(InputError, match="has no AULCs for \\['policy_v9'\\]"):
        compare.cell_differences(grid, "policy_v9", "policy")
    without = compare.cell_differences(grid, "policy_v2", "policy", exclude=["kmnist", "mushrooms"])
    assert sum(map(len, without.values())) == 15 - 4 - 4  # both hold all four regimes
    assert (aulc["policy_v2"] - aulc["policy"]).mean() not in without["balanced-k50"]
    with pytest.raises(InputError, match="names \\['kmnst'\\], which .* has no cells of"):
        compare.cell_differences(grid, "policy_v2", "policy", exclude=["kmnst"])


def test_compare_policies_replicates_per_cell_differences_on_other_seeds(tmp_path):
    """A development grid against a report grid: the per-cell differences of Cluster-Margin and
    the policy, matched cell by cell."""
    compare = load_benchmark("compare_policies")
    dev, report = tmp_path / "dev", tmp_path / "report"
    write_cells(dev, seed=1)
    write_cells(report, seed=2)
    r = compare.replication(dev, report, "cluster_margin", "policy")
    here = compare.per_cell_differences(dev, "cluster_margin", "policy")
    there = compare.per_cell_differences(report, "cluster_margin", "policy")
    ahead = [cell for cell, d in here.items() if d > 0]
    assert r["cells"] == 15 and r["ahead_here"] == len(ahead) and 0 < len(ahead) < 15
    assert r["mean_there_where_ahead_here"] == pytest.approx(np.mean([there[c] for c in ahead]))
    assert r["mean_there_if_chosen_where_ahead_here"] == pytest.approx(sum(there[c] for c in ahead) / 15)
    assert r["pearson_r"] == pytest.approx(np.corrcoef([here[c] for c in sorted(here)],
                                                       [there[c] for c in sorted(here)])[0, 1])
    (tmp_path / "two" / "cells").mkdir(parents=True)
    for name in ("kmnist__balanced-k5.json", "kmnist__balanced-k50.json"):
        shutil.copy(dev / "cells" / name, tmp_path / "two" / "cells" / name)
    with pytest.raises(InputError, match="share 2 cells; a replication needs at least 3"):
        compare.replication(tmp_path / "two", report, "cluster_margin", "policy")


def test_a_grid_with_margin_as_its_only_baseline_writes_its_table(tmp_path, data_root):
    """A grid that ran margin alone beside the policies (--baselines margin): --table-only
    rebuilds its table, with no best-baseline column to fill."""
    grid = load_benchmark("transfer_grid")
    flags = ["--data-root", str(data_root), "--targets", "heart", "--regimes", "balanced-k5", "--seeds", "2",
             "--reference-candidates", "0", "--baselines", "margin", "--extra-policy",
             f"policy_kernel={REPO / 'metaal' / 'policies' / 'kernel.pt'}", "--out", str(tmp_path)]
    assert grid.main(flags) == 0
    (tmp_path / "table.md").unlink()
    assert grid.main([*flags, "--table-only"]) == 0
    markdown = (tmp_path / "table.md").read_text()
    assert "| heart | " in markdown and "| none run |  |" in markdown
    assert "policy_kernel vs margin: mean Δ" in markdown and "best-ranked other baseline" not in markdown


def test_grid_ceiling_counts_what_a_per_cell_choice_could_make_significant(tmp_path):
    """On the committed report grid: the per-cell best of the label-free strategies, and the cells
    where any of them is significantly above margin, match the table's own rows."""
    ceiling = load_benchmark("grid_ceiling")
    table = REPO / "benchmarks" / "results" / "transfer_table"
    cells = ceiling.read_cells(table)
    rows = ceiling.ceiling(cells, "policy")
    not_choices = {"margin", "oracle", "pool_oracle", "expected_gain"}
    label_free = {cell: {s: row for s, row in by.items() if s not in not_choices} for cell, by in cells.items()}
    assert rows["all"]["cells"] == len(cells) == sum(rows[r]["cells"] for r in rows if r != "all")
    assert rows["all"]["any_significant"] == sum(
        any(row["p_holm"] < 0.05 and row["delta_vs_margin"] > 0 for row in by.values()) for by in label_free.values())
    assert rows["all"]["strategy_significant"] <= rows["all"]["any_significant"]
    assert rows["all"]["best_mean"] == pytest.approx(
        np.mean([max(row["delta_vs_margin"] for row in by.values()) for by in label_free.values()]))
    assert "best_gap_closed" in rows["balanced-k5"] and "best_gap_closed" not in rows["all"]
    with pytest.raises(InputError, match="has no row for policy_v9"):
        ceiling.ceiling(cells, "policy_v9")
    with pytest.raises(InputError, match="does not exist"):
        ceiling.read_cells(tmp_path)
