"""The guard that the tests test this checkout."""

from tests.checkout import ROOT, foreign_modules


def test_the_package_under_test_is_this_checkout():
    assert foreign_modules() == []


def test_another_checkout_is_reported(tmp_path):
    problems = foreign_modules(tmp_path)
    assert len(problems) == 2
    assert problems[0] == f"oltr_bench: imported from {ROOT / 'oltr_bench'}, expected {tmp_path / 'oltr_bench'}"
    assert problems[1].startswith("oltr_bench.baselines: imported from ")
