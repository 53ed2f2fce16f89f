import math

import pandas as pd
import pytest

from emodistill.report.tables import paired_differences, paired_to_markdown


def _per_seed():
    return pd.DataFrame({
        "method": ["ref", "ref", "ref", "a", "a", "a", "b", "b"],
        "seed": [1, 2, 3, 1, 2, 3, 1, 3],
        "acc": [0.50, 0.60, 0.70, 0.55, 0.58, 0.80, 0.40, 0.90],
        "mae": [1.0, 1.0, 1.0, 0.9, 1.1, 0.8, 1.0, 1.2],
    })


def test_paired_differences_pair_by_seed_and_count_wins():
    p = paired_differences(_per_seed(), "ref", ["acc", "mae"])
    assert list(p.index) == ["a", "b"]
    d = pd.Series([0.05, -0.02, 0.10])
    assert p.loc["a", "acc_diff_mean"] == pytest.approx(d.mean())
    assert p.loc["a", "acc_diff_std"] == pytest.approx(d.std(ddof=1))
    assert p.loc["a", "acc_wins"] == 2 and p.loc["a", "n_paired"] == 3
    # mae: lower is better -> a wins on seeds 1 and 3
    assert p.loc["a", "mae_wins"] == 2
    # b has seeds 1 and 3 only: paired on those two
    assert p.loc["b", "n_paired"] == 2
    assert p.loc["b", "acc_diff_mean"] == pytest.approx(((0.40 - 0.50) + (0.90 - 0.70)) / 2)
    assert p.loc["b", "mae_wins"] == 0


def test_paired_markdown_shows_signed_difference_and_wins():
    p = paired_differences(_per_seed(), "ref", ["acc"])
    md = paired_to_markdown(p, ["acc"], reference="ref", title="t")
    assert "| method − ref | acc |" in md
    assert "+4.33 ± 6.03 (2/3)" in md  # mean of 5, -2, 10 points; std 6.03
    assert "(w/n) = seeds where the method is better" in md


def test_paired_single_seed_has_no_std():
    df = _per_seed()[lambda d: d.seed == 1]
    p = paired_differences(df, "ref", ["acc"])
    assert math.isnan(p.loc["a", "acc_diff_std"])


def test_unknown_reference_is_named():
    with pytest.raises(ValueError, match="reference 'zzz' is not one of the methods"):
        paired_differences(_per_seed(), "zzz", ["acc"])
