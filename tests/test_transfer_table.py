"""A reduced transfer table (2 targets, 3 seeds): a test of the pipeline, not of the numbers."""

import json

from tests.conftest import load_benchmark


def test_reduced_transfer_table(tmp_path, data_root, capsys):
    table = load_benchmark("transfer_table")
    args = ["--data-root", str(data_root), "--datasets", "heart,omniglot_sanskrit_tagalog", "--seeds", "3",
            "--rounds", "3", "--oracle-candidates", "8", "--out", str(tmp_path), "--no-progress",
            "--history", str(tmp_path / "history.json")]
    table.main([*args, "--note", "first"])
    assert table.main([*args, "--note", "refused"]) == 2  # never replaces an earlier table silently
    assert "already holds results (table.json, table.md); pass --overwrite" in capsys.readouterr().err
    table.main([*args, "--note", "second", "--overwrite"])
    result = json.loads((tmp_path / "table.json").read_text())
    assert set(result["targets"]) == {"heart", "omniglot_sanskrit_tagalog"}
    heart = result["targets"]["heart"]
    assert {"policy", "margin", "random", "badge", "oracle", "pool_oracle", "expected_gain"} <= set(heart["strategies"])
    assert {"gap_closed", "gap_closed_pool"} <= set(heart)
    assert {c["baseline"] for c in heart["comparisons"]} >= {"margin", "random", "oracle"}
    assert heart["target"]["spec"]["n_ways"] == 2
    omniglot = result["targets"]["omniglot_sanskrit_tagalog"]["target"]["spec"]
    assert omniglot["n_ways"] == 5 and omniglot["pool_per_class"] == 14
    assert result["aggregate"]["targets"] == 2
    history = json.loads((tmp_path / "history.json").read_text())
    assert [h["note"] for h in history] == ["first", "second"]  # every attempt is kept
    assert "| heart |" in (tmp_path / "table.md").read_text()
    assert {"mean_gap_closed", "mean_gap_closed_pool"} <= set(result["aggregate"])
    assert result["aggregate"]["references_vs_margin"]["expected_gain"]["above_margin"] in (0, 1, 2)
