"""k after exclusions: an excluded participant's labels stay stored, and their slots reopen.

Checked in the database: every main and control item ends with exactly k analysed
labels (those of participants who are not excluded), its counters agree with the rows,
and excluded participants' labels are all still there. The researcher's pages and the
API over these services are tested in tests/study/test_exclusion_pages.py.
"""

from __future__ import annotations

import threading
import uuid
from collections import Counter

import pytest
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import connection, transaction
from django.test import Client

from labeling import services
from labeling.models import Assignment, Label, Participant
from labeling.services import exclusion
from study.models import ExclusionDecision, Study, StudyCollaborator, StudyItem
from study.queries import study_progress
from tests.labeling.conftest import (
    answer_all,
    answer_body,
    api_answer,
    api_next,
    configure,
    run_at_once,
    start_open,
)
from tests.labeling.test_recruitment import mturk_url, prolific_url
from tests.sqlite import postgresql_only

FAST_MS = 10.0  # under the study's min_response_ms


def analysed_labels(study: Study) -> Counter[int]:
    """Per counted item: its labels from participants who are not excluded."""
    labels = Label.objects.filter(
        item__study=study, item__kind__in=["main", "control"], participant__excluded=False
    )
    return Counter(labels.values_list("item_id", flat=True))


def assert_exactly_k_analysed(study: Study) -> None:
    k = study.labels_per_item
    analysed = analysed_labels(study)
    rows = StudyItem.objects.filter(study=study, kind__in=["main", "control"])
    for item_id, assigned, labelled in rows.values_list("id", "assigned_count", "labelled_count"):
        assert (analysed[item_id], labelled, assigned) == (k, k, k), f"item {item_id}"
    assert not Assignment.objects.filter(
        item__study=study, status=Assignment.Status.ACTIVE
    ).exists()
    assert ExclusionDecision.objects.filter(study=study, applied_at=None).count() == 0


def fill_up(study: Study) -> int:
    """Newcomers who answer well, until no slot is free (a study still recruiting)."""
    newcomers = 0
    while StudyItem.objects.filter(
        study=study, kind__in=["main", "control"], assigned_count__lt=study.labels_per_item
    ).exists():
        answer_all(services.join_study(study))
        newcomers += 1
        assert newcomers < 50, "the study never filled"
    return newcomers


def careless(participant: Participant) -> int:
    """Answers every image at once: the speed rule excludes them after two answers."""
    answered = 0
    while (assignment := services.next_assignment(participant)) is not None:
        services.submit_label(participant, assignment.public_id, 1, uuid.uuid4(), FAST_MS)
        answered += 1
    return answered


def fast_rule_study(make_study, **sizes: int) -> Study:
    study = make_study(**sizes)
    return configure(study, min_response_ms=250, max_fast_responses=1)


# ---- by the study's rules ----


def test_an_exclusion_by_the_rules_gives_back_its_labels_and_leases_slots(make_study) -> None:
    study = fast_rule_study(make_study, count=4, labels_per_item=1, items_per_participant=4)
    participant = services.join_study(study)

    assert careless(participant) == 2

    participant.refresh_from_db()
    assert participant.excluded
    assert participant.completed_at is not None
    assert Label.objects.filter(participant=participant).count() == 2  # kept
    counts = StudyItem.objects.filter(study=study).values_list("assigned_count", "labelled_count")
    assert set(counts) == {(0, 0)}  # the two labelled items and the preloaded one reopened
    decision = ExclusionDecision.objects.get(participant=participant)
    assert (decision.excluded, decision.decided_by, decision.ended_session) == (True, None, True)
    assert decision.reason == "answered 2 images faster than 250 ms (1 allowed)"
    assert decision.applied_at is not None
    assert decision.slots_moved == 3  # two labels, one lease


def test_the_study_still_ends_with_exactly_k_analysed_labels_per_item(make_study) -> None:
    study = fast_rule_study(make_study, count=6, labels_per_item=2, items_per_participant=3)
    answer_all(services.join_study(study))
    careless(services.join_study(study))
    answer_all(services.join_study(study))
    careless(services.join_study(study))

    fill_up(study)

    assert_exactly_k_analysed(study)
    excluded_labels = Label.objects.filter(participant__excluded=True).count()
    assert excluded_labels == 4  # two each, stored and exportable
    assert Label.objects.filter(item__kind="main").count() == 6 * 2 + excluded_labels


@postgresql_only("threads labelling at once need row locks")
@pytest.mark.django_db(transaction=True)
def test_k_analysed_labels_with_exclusions_while_others_label_at_once(
    make_study, researcher: User
) -> None:
    study = fast_rule_study(make_study, count=12, labels_per_item=3, items_per_participant=4)
    participants = [services.join_study(study) for _ in range(10)]
    sloppy = set(participants[::3])
    by_hand = participants[1]

    def journey(participant: Participant) -> None:
        if participant in sloppy:
            careless(participant)
        elif participant == by_hand:
            services.next_trial(participant)  # leases two items; then the researcher steps in
            exclusion.exclude_participant(study, participant, "Known bot", by=researcher)
        else:
            answer_all(participant)

    run_at_once(participants, journey)
    fill_up(study)

    assert_exactly_k_analysed(study)
    excluded = set(Participant.objects.filter(study=study, excluded=True))
    assert excluded == sloppy | {by_hand}
    assert Label.objects.filter(participant__in=sloppy).count() == 2 * len(sloppy)


@postgresql_only("only PostgreSQL has row locks for another request to hold")
@pytest.mark.django_db(transaction=True)
def test_an_item_held_elsewhere_moves_its_slots_right_after_the_answer(make_study) -> None:
    study = fast_rule_study(make_study, count=4, labels_per_item=1, items_per_participant=4)
    participant = services.join_study(study)
    first = services.next_assignment(participant)
    services.submit_label(participant, first.public_id, 1, uuid.uuid4(), FAST_MS)
    second = services.next_assignment(participant)
    locked, release = threading.Event(), threading.Event()

    def hold_first_item() -> None:  # another request's transaction, holding the item's row
        try:
            with transaction.atomic():
                StudyItem.objects.select_for_update().get(pk=first.item_id)
                locked.set()
                release.wait(10)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_first_item)
    holder.start()
    locked.wait(10)
    with transaction.atomic():
        services.submit_label(participant, second.public_id, 1, uuid.uuid4(), FAST_MS)
        # Excluded now, but its answer waits for no other item: the slots move later.
        assert Participant.objects.get(pk=participant.pk).excluded
        assert ExclusionDecision.objects.get().applied_at is None
        release.set()  # the hook after the commit waits for the holder, then applies
    holder.join()

    assert ExclusionDecision.objects.get().applied_at is not None
    counts = StudyItem.objects.filter(study=study).values_list("assigned_count", "labelled_count")
    assert set(counts) == {(0, 0)}


def test_a_decision_left_unapplied_is_applied_by_the_next_lease_sweep(make_study) -> None:
    study = fast_rule_study(make_study, count=4, labels_per_item=1, items_per_participant=4)
    participant = services.join_study(study)
    for _ in range(2):
        assignment = services.next_assignment(participant)
        services.submit_label(participant, assignment.public_id, 1, uuid.uuid4(), 900.0)
    # As a crash between an answer's commit and its hook would leave it.
    locked = Participant.objects.get(pk=participant.pk)
    decision = exclusion._decide(locked, excluded=True, reasons=["a rule"], by=None)

    services.release_expired_leases(study)  # the leases alone: not yet
    assert StudyItem.objects.filter(study=study, assigned_count=1).count() == 3
    services.next_trial(services.join_study(study))  # a newcomer's request sweeps

    decision.refresh_from_db()
    assert decision.applied_at is not None
    assert decision.slots_moved == 3


# ---- by hand ----


def test_excluding_by_hand_reopens_the_slots_and_records_who_when_and_why(
    make_study, researcher: User
) -> None:
    study = make_study(count=4, labels_per_item=1, items_per_participant=4)
    finished, labelling = services.join_study(study), services.join_study(study)
    answer_all(finished)
    services.complete_participation(finished)  # as the end page does
    assert services.next_assignment(labelling) is None  # the study is full

    reason = "  Same answer\nevery time "
    change = exclusion.exclude_participant(study, finished, reason, by=researcher)

    assert change.changed
    finished.refresh_from_db()
    assert finished.excluded
    assert finished.exclusion_reasons == ["Same answer every time"]
    decision = ExclusionDecision.objects.get()
    assert (decision.participant, decision.decided_by, decision.excluded) == (
        finished,
        researcher,
        True,
    )
    assert decision.reason == "Same answer every time"
    assert not decision.ended_session  # they had finished: they got the completion code
    assert decision.slots_moved == 4
    assert set(StudyItem.objects.values_list("assigned_count", "labelled_count")) == {(0, 0)}
    assert Label.objects.filter(participant=finished).count() == 4  # kept
    assert answer_all(labelling) == 4  # the reopened items are offered again
    assert_exactly_k_analysed(study)


def test_excluding_by_hand_ends_a_session_under_way_and_its_leases(
    make_study, researcher: User
) -> None:
    study = make_study(count=4, labels_per_item=1, items_per_participant=4)
    participant = services.join_study(study)
    trial = services.next_trial(participant)
    services.submit_label(participant, trial.current.public_id, 1, uuid.uuid4(), 900.0)

    exclusion.exclude_participant(study, participant, "Talked to the experimenter", by=researcher)

    participant.refresh_from_db()
    assert participant.completed_at is not None
    assert ExclusionDecision.objects.get().ended_session
    assert not participant.assignments.filter(status=Assignment.Status.ACTIVE).exists()
    assert set(StudyItem.objects.values_list("assigned_count", "labelled_count")) == {(0, 0)}
    assert services.next_assignment(participant) is None
    following = trial.following
    assert following is not None
    with pytest.raises(services.LabelRejected):
        services.submit_label(participant, following.public_id, 1, uuid.uuid4(), 900.0)


def test_a_page_left_open_after_re_inclusion_takes_no_answer(make_study, researcher: User) -> None:
    study = make_study(count=4, labels_per_item=1, items_per_participant=4)
    configure(study, max_fast_responses=0)
    participant = services.join_study(study)
    trial = services.next_trial(participant)
    services.submit_label(participant, trial.current.public_id, 1, uuid.uuid4(), 900.0)
    exclusion.exclude_participant(study, participant, "Looked away", by=researcher)
    exclusion.include_participant(study, participant, "Checked the video: fine", by=researcher)
    following = trial.following
    assert following is not None

    # The ended session's page answers its held trial, too fast for the study's rules.
    with pytest.raises(services.LabelRejected, match="this session has ended"):
        services.submit_label(participant, following.public_id, 1, uuid.uuid4(), 10.0)

    participant.refresh_from_db()
    assert not participant.excluded  # the researcher's decision stands
    assert Label.objects.filter(participant=participant).count() == 1
    assert ExclusionDecision.objects.filter(participant=participant).count() == 2


def test_excluding_an_excluded_participant_changes_nothing(make_study, researcher: User) -> None:
    study = fast_rule_study(make_study, count=4, labels_per_item=1, items_per_participant=4)
    participant = services.join_study(study)
    careless(participant)
    before = list(StudyItem.objects.order_by("id").values_list("assigned_count", "labelled_count"))

    change = exclusion.exclude_participant(study, participant, "Again", by=researcher)

    assert not change.changed
    participant.refresh_from_db()
    assert participant.exclusion_reasons == ["answered 2 images faster than 250 ms (1 allowed)"]
    assert ExclusionDecision.objects.count() == 1
    after = list(StudyItem.objects.order_by("id").values_list("assigned_count", "labelled_count"))
    assert after == before
    assert not exclusion.include_participant(
        study, services.join_study(study), "Was never out", by=researcher
    ).changed


def test_re_including_takes_the_slots_back_and_says_which_items_went_over_k(
    make_study, researcher: User
) -> None:
    study = fast_rule_study(make_study, count=4, labels_per_item=1, items_per_participant=4)
    sloppy = services.join_study(study)
    careless(sloppy)  # two labels, then excluded
    fill_up(study)  # others give every item its one label, the sloppy one's two included
    sloppy_items = set(Label.objects.filter(participant=sloppy).values_list("item_id", flat=True))

    change = exclusion.include_participant(study, sloppy, "The timer was broken", by=researcher)

    sloppy.refresh_from_db()
    assert (sloppy.excluded, sloppy.exclusion_reasons) == (False, [])
    assert sloppy.completed_at is not None  # the session stays ended
    assert change.decision is not None
    assert (change.decision.slots_moved, change.decision.items_over_k) == (2, 2)
    analysed = analysed_labels(study)
    for item in StudyItem.objects.filter(study=study):
        over = 1 if item.pk in sloppy_items else 0
        assert analysed[item.pk] == item.labelled_count == item.assigned_count == 1 + over


def test_re_including_where_slots_are_free_leaves_every_item_at_or_under_k(
    make_study, researcher: User
) -> None:
    study = make_study(count=4, labels_per_item=2, items_per_participant=4)
    participant = services.join_study(study)
    answer_all(participant)
    exclusion.exclude_participant(study, participant, "Unsure", by=researcher)

    change = exclusion.include_participant(study, participant, "Checked: fine", by=researcher)

    assert change.decision is not None
    assert change.decision.items_over_k == 0
    assert set(StudyItem.objects.values_list("assigned_count", "labelled_count")) == {(1, 1)}
    decisions = ExclusionDecision.objects.values_list("excluded", "reason", "decided_by")
    assert list(decisions) == [
        (True, "Unsure", researcher.pk),
        (False, "Checked: fine", researcher.pk),
    ]


@pytest.mark.parametrize(
    ("reason", "message"), [("   ", "Give a reason"), ("x" * 501, "500 characters")]
)
def test_a_decision_without_a_sensible_reason_is_refused_and_changes_nothing(
    make_study, researcher: User, reason: str, message: str
) -> None:
    study = make_study(count=4, labels_per_item=1, items_per_participant=4)
    participant = services.join_study(study)
    answer_all(participant)

    with pytest.raises(ValidationError, match=message):
        exclusion.exclude_participant(study, participant, reason, by=researcher)

    participant.refresh_from_db()
    assert not participant.excluded
    assert not ExclusionDecision.objects.exists()
    assert set(StudyItem.objects.values_list("assigned_count", "labelled_count")) == {(1, 1)}


def test_only_the_owner_and_editors_decide(make_study, researcher: User, outsider: User) -> None:
    study = make_study(count=4, labels_per_item=1, items_per_participant=4)
    participant = services.join_study(study)
    StudyCollaborator.objects.create(study=study, user=outsider, role="view")

    with pytest.raises(PermissionDenied):
        exclusion.exclude_participant(study, participant, "No", by=outsider)

    StudyCollaborator.objects.filter(user=outsider).update(role="edit")
    assert exclusion.exclude_participant(study, participant, "Yes", by=outsider).changed


def test_a_participant_of_another_study_or_who_declined_is_refused(
    make_study, researcher: User
) -> None:
    study, other = make_study(count=4), make_study(count=5)
    stranger = services.join_study(other)
    declined = Participant.objects.create(study=study)
    services.decline_consent(declined)

    with pytest.raises(ValidationError, match="did not take part"):
        exclusion.exclude_participant(study, stranger, "Wrong study", by=researcher)
    with pytest.raises(ValidationError, match="declined consent"):
        exclusion.exclude_participant(study, declined, "Declined", by=researcher)
    assert not ExclusionDecision.objects.exists()


# ---- the end an excluded participant gets ----

COMPLETE = "https://app.prolific.com/submissions/complete?cc="


def excluded_from(client: Client, study: Study, entry_url: str) -> Participant:
    """A recruited participant who answers too fast through the JSON API until the end."""
    assert client.get(entry_url).status_code == 302
    start_open(client, study)
    state = api_next(client, study)
    while not state.get("done"):
        body = answer_body(state, 1) | {"client_response_ms": FAST_MS}
        reply = api_answer(client, study, body).json()
        state = reply["next"] or api_next(client, study)
    participant = Participant.objects.latest("id")
    assert participant.excluded
    return participant


@pytest.mark.parametrize(
    ("outcome", "code_of"),
    [
        ("screen_out", lambda study: study.screen_out_code),
        ("completion", lambda study: study.completion_code),
    ],
)
def test_prolific_sends_an_excluded_participant_back_with_the_studys_chosen_code(
    make_study, outcome: str, code_of
) -> None:
    study = fast_rule_study(make_study, count=4, labels_per_item=1, items_per_participant=4)
    configure(study, recruitment="prolific", excluded_outcome=outcome)
    client = Client()

    participant = excluded_from(client, study, prolific_url(study))
    done = client.get(f"/s/{study.join_token}/done/")

    assert done["Location"] == COMPLETE + code_of(study)
    assert ExclusionDecision.objects.get(participant=participant).ended_session


def test_no_code_ends_with_a_thank_you_and_no_submit_form(make_study) -> None:
    study = fast_rule_study(make_study, count=4, labels_per_item=1, items_per_participant=4)
    configure(study, recruitment="mturk", excluded_outcome="no_code")
    client = Client()

    excluded_from(client, study, mturk_url(study))
    page = client.get(f"/s/{study.join_token}/done/").content.decode()

    assert "Thank you for taking part" in page
    assert 'id="mturk-submit"' not in page
    assert study.completion_code not in page
    assert study.screen_out_code not in page


def test_the_end_never_says_why(make_study) -> None:
    study = fast_rule_study(make_study, count=4, labels_per_item=1, items_per_participant=4)
    configure(study, recruitment="mturk")  # the screen-out code goes into the HIT's form
    client = Client()

    excluded_from(client, study, mturk_url(study))
    page = client.get(f"/s/{study.join_token}/done/").content.decode()

    assert f'name="completion_code" value="{study.screen_out_code}"' in page
    for telling in ("exclu", "fast", "attention", "screen", "reject", "check"):
        assert telling not in page.lower()


def test_one_excluded_by_hand_after_finishing_kept_the_completion_code(
    make_study, researcher: User
) -> None:
    study = configure(make_study(count=4, labels_per_item=1), recruitment="prolific")
    client = Client()
    client.get(prolific_url(study))
    start_open(client, study)
    state = api_next(client, study)
    while not state.get("done"):
        state = api_answer(client, study, answer_body(state, 1)).json()["next"]
    participant = Participant.objects.get()

    exclusion.exclude_participant(study, participant, "Straight-lined", by=researcher)

    done = client.get(f"/s/{study.join_token}/done/")
    assert done["Location"] == COMPLETE + study.completion_code


def test_progress_counts_analysed_labels_toward_k(make_study, researcher: User) -> None:
    study = fast_rule_study(make_study, count=4, labels_per_item=1, items_per_participant=4)
    sloppy = services.join_study(study)
    careless(sloppy)

    assert study_progress(study) | {"completed": 0} == {
        "items": 4,
        "labels": 0,  # the two labels are stored, but not analysed: their items reopened
        "labels_needed": 4,
        "labels_over_k": 0,
        "participants": 1,
        "completed": 0,
        "excluded": 1,
    }
    fill_up(study)
    assert study_progress(study)["labels"] == 4
    exclusion.include_participant(study, sloppy, "Fine after all", by=researcher)
    progress = study_progress(study)
    assert (progress["labels"], progress["labels_over_k"]) == (4, 2)
