"""The README states the contract as the code defines it."""

from pathlib import Path

from ingest.contract import contract_markdown


def test_readme_contract_table_matches_the_code():
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text(encoding="utf-8")
    assert contract_markdown() in readme
