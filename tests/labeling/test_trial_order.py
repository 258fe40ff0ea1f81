"""Trial order: no stratum recurs at a fixed distance more often than chance; lists balanced."""

from __future__ import annotations

import math
import uuid
from collections import Counter

from labeling import services
from labeling.models import Participant
from study.models import ANALYSED_ITEM_KINDS, Study

PARTICIPANTS = 200
TRIALS = 12


def strata_in_trial_order(participant: Participant) -> list[int]:
    """The (setting, source class) stratum of each counted trial, in the order served."""
    counted = participant.assignments.filter(item__kind__in=ANALYSED_ITEM_KINDS)
    return list(counted.order_by("id").values_list("item__stratum", flat=True))


def take_part(study: Study, number: int) -> list[int]:
    """One participant, with a fixed public id (it seeds their order), through every trial."""
    participant = services.join_study(study)
    participant.public_id = uuid.UUID(int=number + 1)
    Participant.objects.filter(pk=participant.pk).update(public_id=participant.public_id)
    trial = services.next_trial(participant)
    while trial is not None:
        answer = services.Answer(trial.current.public_id, 1, uuid.uuid4(), 900.0)
        trial = services.answer_and_continue(participant, answer).trial
        trial = trial or services.next_trial(participant)
    return strata_in_trial_order(participant)


def chance_share(orders: list[list[int]]) -> float:
    """How often two trials of a list share a stratum if each list were shuffled at random."""
    shares = [
        sum(n * (n - 1) for n in Counter(order).values()) / (len(order) * (len(order) - 1))
        for order in orders
    ]
    return sum(shares) / len(shares)


def share_at_distance(orders: list[list[int]], distance: int) -> tuple[float, int]:
    pairs = [
        (order[i], order[i + distance]) for order in orders for i in range(len(order) - distance)
    ]
    return sum(a == b for a, b in pairs) / len(pairs), len(pairs)


def test_no_stratum_recurs_at_a_fixed_distance_more_often_than_chance(make_study, settings) -> None:
    settings.ADVSTUDY_LEASE_SWEEP_SECONDS = 3600  # no lease expires here: spare the sweeps
    # Enough labels per item that no item runs out: only the order is under test.
    study = make_study(count=60, labels_per_item=PARTICIPANTS, items_per_participant=TRIALS)
    per_stratum = Counter(study.items.values_list("stratum", flat=True))
    strata = set(per_stratum)
    assert 8 <= len(strata) < TRIALS  # each list passes through some strata twice
    assert min(per_stratum.values()) >= math.ceil(TRIALS / len(strata))  # none runs short

    orders = [take_part(study, number) for number in range(PARTICIPANTS)]

    assert all(len(order) == TRIALS for order in orders)
    for order in orders:  # balanced: each stratum equally often, give or take one
        counts = [order.count(stratum) for stratum in strata]
        assert max(counts) - min(counts) <= 1, counts
    expected = chance_share(orders)
    for distance in range(1, TRIALS):
        share, pairs = share_at_distance(orders, distance)
        # Four standard errors of a share of this many pairs, pairs taken as independent.
        tolerance = 4 * math.sqrt(expected * (1 - expected) / pairs) + 0.005
        assert abs(share - expected) <= tolerance, (distance, share, expected, tolerance)
