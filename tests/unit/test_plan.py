"""Which runs a case gets, and in what order."""

from pytest_batchperf.plan import Plan, Side, Slot

C, R = Side.CANDIDATE, Side.REFERENCE


def test_baseline_mode_runs_are_candidate_runs_in_order():
    assert Plan(3).slots() == (Slot(1, C), Slot(2, C), Slot(3, C))
    assert Plan(3, extend=2).extension(1) == (Slot(4, C, True),)
    assert Plan(3, extend=2).looks == 3


def test_ab_pairs_alternate_abba():
    sides = [s.side for s in Plan(4, ab=True).slots()]
    assert sides == [R, C, C, R, R, C, C, R]
    assert [s.index for s in Plan(4, ab=True).slots()] == list(range(1, 9))
    # the next pair continues the pattern: pair 5 is reference first
    assert Plan(4, ab=True, extend=1).extension(1) == (Slot(9, R, True), Slot(10, C, True))


def test_a_shorter_plan_is_a_prefix_of_a_longer_one():
    """Cases with fewer runs (a marker) share the first passes of the others."""
    assert Plan(5, ab=True).slots()[:4] == Plan(2, ab=True).slots()
    assert Plan(5).slots()[:2] == Plan(2).slots()


def test_cases_run_back_to_back_take_turns_at_opening():
    """Issue #38: every other case opens with the candidate, extensions continuing its
    pattern, so an effect of a run's place falls on each side in as many cases."""
    assert Plan(3, ab=True).counterbalanced(0) == Plan(3, ab=True)
    turned = Plan(3, ab=True, extend=1).counterbalanced(1)
    assert [s.side for s in turned.slots()] == [C, R, R, C, C, R]
    assert turned.extension(1) == (Slot(7, R, True), Slot(8, C, True))
    assert Plan(3).counterbalanced(1) == Plan(3)  # one side: nothing to turn
