"""benchmarks/reproduce_default.py on the recipe study's tiny setting: the user's ``gankd compress`` command, run
in a fresh process with only teacher, width, data, steps and seed, trains the default recipe's cell bit for bit and
scores the same numbers; a cell of another recipe is refused."""

from __future__ import annotations

import pytest
from evalkit import private_cache_fixture  # noqa: F401  (fixture)
from test_benchmarks_recipes import _main, rec, tiny  # noqa: F401  (fixtures)
from testkit import load_benchmark


def test_the_users_command_gives_the_default_cells_numbers_exactly(rec, tiny, monkeypatch, capsys):  # noqa: F811
    repro = load_benchmark("reproduce_default")
    import recipes as scored_with  # the study module the script scores with (tests load their own copy as rec)

    monkeypatch.setitem(scored_with.SETTINGS, "tiny", rec.SETTINGS["tiny"])
    _main(rec, tiny, "--recipes", "default")  # 2 steps: the adversarial phase is the last one
    r = repro.reproduce("tiny__default__n2__s0", tiny["out"], tiny["runs"])
    assert r["command"].startswith("gankd compress --teacher ") and "--steps 2 --seed 0 --set threads=1" in r["command"]
    assert r["weights_equal_to_cell_run"] is True and r["agrees"] and r["max_relative_difference"] <= 1e-4
    assert {"fid_vs_teacher", "psnr_to_teacher"} <= set(r["numbers"]["test"])
    assert (tiny["out"] / "reproduce" / "tiny__default__n2__s0.json").is_file()

    _main(rec, tiny, "--recipes", "plain")
    with pytest.raises(SystemExit, match="compress_default"):
        repro.reproduce("tiny__plain__n2__s0", tiny["out"], tiny["runs"])
    capsys.readouterr()
