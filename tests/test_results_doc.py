"""RESULTS.md shows the committed benchmark tables verbatim (so its figures cannot drift)."""


from tests.conftest import REPO, load_benchmark


def test_results_doc_tables_match_their_files():
    renderer = load_benchmark("render_results")
    assert renderer.BLOCK.search((REPO / "RESULTS.md").read_text()), "RESULTS.md includes no table"
    assert renderer.main(["--check"]) == 0


def test_a_stale_table_is_caught(tmp_path):
    renderer = load_benchmark("render_results")
    doc = tmp_path / "RESULTS.md"
    table = "benchmarks/results/transfer_table_dev/table.md"
    doc.write_text(f"# r\n<!-- include: {table} -->\n| an old | table |\n<!-- end include -->\n")
    assert renderer.main(["--check", "--doc", str(doc)]) == 1
    assert renderer.main(["--doc", str(doc)]) == 0 and renderer.main(["--check", "--doc", str(doc)]) == 0
    assert (REPO / table).read_text() in doc.read_text()
