"""The quality gate's decision, exactly, in both directions."""

from __future__ import annotations

from training.gate import TOLERANCE, Standing, Verdict, decide


def test_a_model_worse_beyond_the_tolerance_is_held_back() -> None:
    current = Standing("0004", 0.9200, same_rows=True)
    assert TOLERANCE == 0.005
    assert decide(0.9149, current, force=False) == Verdict(
        False,
        "validation AUC 0.9149 against 0.9200 of 0004 on the same rows: worse by more than 0.005",
    )


def test_a_model_within_the_tolerance_or_better_becomes_current() -> None:
    current = Standing("0004", 0.9200, same_rows=True)
    assert decide(0.9151, current, force=False) == Verdict(
        True, "validation AUC 0.9151 against 0.9200 of 0004 on the same rows, tolerance 0.005"
    )
    assert decide(0.9300, current, force=False).current


def test_force_no_current_and_no_figure_promote_and_say_why() -> None:
    worse = Standing("0002", 0.99, same_rows=True)
    assert decide(0.5, worse, force=True) == Verdict(True, "--force")
    assert decide(0.5, None, force=False) == Verdict(True, "no model was current")
    unmeasured = Standing("0001", None, same_rows=False)
    assert decide(0.5, unmeasured, force=False) == Verdict(
        True, "0001 has no validation figure to compare"
    )


def test_other_inputs_are_compared_as_recorded_and_say_so() -> None:
    recorded = Standing("0003", 0.80, same_rows=False)
    assert decide(0.70, recorded, force=False) == Verdict(
        False,
        "validation AUC 0.7000 against 0.8000 of 0003 as recorded (other inputs): "
        "worse by more than 0.005",
    )
