import pytest

from analysis.measures import agreement, majority_label


@pytest.mark.parametrize(
    ("votes", "expected"),
    [
        ([], None),
        ([3], 3),
        ([3, 3, 5], 3),
        ([3, 5], None),
        ([1, 1, 2, 2, 7], None),
        ([-1, -1, 4], -1),
    ],
)
def test_majority_label_records_ties_as_no_majority(votes, expected) -> None:
    assert majority_label(votes) == expected


def test_agreement_counts_only_examples_with_a_majority_and_a_prediction() -> None:
    assert agreement({1: 3, 2: 4, 3: 5}, {1: 3, 2: 9, 4: 1}) == 0.5
    assert agreement({}, {1: 3}) is None
