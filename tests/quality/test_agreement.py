"""Agreement statistics against numbers computed by hand or published, not the libraries."""

from __future__ import annotations

import numpy as np
import pytest

from engine.quality import agreement

# Fleiss' worked example (14 raters, 10 items, 5 categories), as reproduced on
# Wikipedia "Fleiss' kappa": P-bar = 0.378, P-bar_e = 0.213, kappa = 0.210.
FLEISS_TABLE = np.array(
    [
        [0, 0, 0, 0, 14],
        [0, 2, 6, 4, 2],
        [0, 0, 3, 5, 6],
        [0, 3, 9, 2, 0],
        [2, 2, 8, 1, 1],
        [7, 7, 0, 0, 0],
        [3, 2, 6, 3, 0],
        [2, 5, 3, 2, 2],
        [6, 5, 2, 1, 0],
        [0, 2, 2, 3, 7],
    ]
)


def test_fleiss_kappa_on_the_published_example() -> None:
    assert agreement.fleiss_kappa(FLEISS_TABLE) == pytest.approx(0.2099, abs=5e-4)


def test_fleiss_kappa_by_hand_on_three_raters() -> None:
    # 4 items x 3 raters, categories yes/no: (3,0) (3,0) (0,3) (2,1).
    # P_i = [1, 1, 1, 1/3] -> P-bar = 10/12; p_yes = 8/12, p_no = 4/12
    # -> P_e = 64/144 + 16/144 = 80/144; kappa = (10/12 - 80/144) / (1 - 80/144) = 0.625.
    ratings = [["y", "y", "y"], ["y", "y", "y"], ["n", "n", "n"], ["y", "y", "n"]]
    table, categories = agreement.category_table(ratings)
    assert categories == ["n", "y"]
    assert agreement.fleiss_kappa(table) == pytest.approx(0.625)
    assert agreement.verdict_of(0.625) == "good"


def test_fleiss_kappa_is_undefined_for_one_category_and_checks_its_table() -> None:
    assert agreement.fleiss_kappa(np.array([[3, 0], [3, 0]])) is None
    with pytest.raises(ValueError, match="same number"):
        agreement.fleiss_kappa(np.array([[3, 0], [2, 0]]))
    with pytest.raises(ValueError, match="same number"):
        agreement.category_table([["a", "b"], ["a"]])


def test_cohen_kappa_on_a_two_by_two_computed_by_hand() -> None:
    # both yes 20, A yes / B no 5, A no / B yes 10, both no 15 (n = 50):
    # p_o = 35/50 = 0.7; p_e = 0.5 * 0.6 + 0.5 * 0.4 = 0.5; kappa = 0.2 / 0.5 = 0.4.
    a = ["yes"] * 25 + ["no"] * 25
    b = ["yes"] * 20 + ["no"] * 5 + ["yes"] * 10 + ["no"] * 15
    assert agreement.cohen_kappa(a, b) == pytest.approx(0.4)
    assert agreement.verdict_of(0.4) == "clarify"
    assert agreement.cohen_kappa(["x", "x"], ["x", "x"]) is None


def test_krippendorff_alpha_by_hand_with_a_missing_rating() -> None:
    # Two raters, items (a,a) (a,b) (b,b) (b,b) and one item rated once (not pairable).
    # Coincidences: o_aa = 2, o_ab = o_ba = 1, o_bb = 4; n_a = 3, n_b = 5, n = 8.
    # alpha = 1 - (n - 1) * (o_ab + o_ba) / (n_a n_b + n_b n_a) = 1 - 7 * 2 / 30 = 0.5333.
    ratings = [["a", "a", "b", "b", "a"], ["a", "b", "b", "b", None]]
    assert agreement.krippendorff_alpha(ratings) == pytest.approx(8 / 15, abs=1e-9)


def test_verdict_thresholds() -> None:
    assert agreement.verdict_of(0.81) == "excellent"
    assert agreement.verdict_of(0.8) == "good"
    assert agreement.verdict_of(0.59) == "clarify"
    assert agreement.verdict_of(None) == "n/a"
