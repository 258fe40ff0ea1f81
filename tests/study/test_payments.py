"""Payments: the owner's Prolific and MTurk files, built from the study's rules, each download
recorded; and the designer's payment and exclusion fields."""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client

from labeling import services as labeling_services
from labeling.models import Participant
from study import services
from study.models import PaymentFileDownload, Study, StudyItem
from tests.fixtures import PASSWORD
from tests.labeling.conftest import add_items, answer_all, configure, diligent
from tests.study.test_views import designer_form

ALICE, BOB, CAROL, DAVE = (f"60ffe5c8371090c7041d43f{digit}" for digit in "1234")
WORKER_ALICE, WORKER_BOB, WORKER_CAROL = "A1ALICE2WORKER", "A2BOB3WORKER", "A3CAROL4WORKER"


def reason(study: Study) -> str:
    """The excluded participant's reasons, as the files give them: how many checks they
    failed depends on where the session ended, at a neutral point after the first."""
    reasons = Participant.objects.get(study=study, excluded=True).exclusion_reasons
    assert reasons[0].startswith("failed ")
    assert reasons[0].endswith("attention checks (0 allowed)")
    return "; ".join(reasons)


def wrong_on_checks(item: StudyItem) -> int:
    return (item.expected_label + 1) % 10 if item.expected_label is not None else 1


def paid_study(make_study: Callable[..., Study], recruitment: str) -> Study:
    """Four items for each participant and two attention checks, none of which may fail;
    10 pence a check answered right and 5 an item."""
    study = make_study(count=8, labels_per_item=2, items_per_participant=4)
    add_items(study, StudyItem.Kind.ATTENTION, 2)
    return configure(
        study,
        recruitment=recruitment,
        attention_checks_per_participant=2,
        max_attention_failures=0,
        bonus_per_attention_check=Decimal("0.10"),
        bonus_per_item=Decimal("0.05"),
    )


def arrive(study: Study, external_id: str, assignment: str = "") -> Participant:
    session = {"assignment_id": assignment, "hit_id": "H1"} if assignment else {}
    participant = labeling_services.enter_study(study, study.recruitment, external_id, session)
    labeling_services.give_consent(participant)
    return participant


def finish(participant: Participant, choose: Callable[[StudyItem], int] = diligent) -> None:
    answer_all(participant, choose)
    labeling_services.complete_participation(participant)


@pytest.fixture
def prolific_study(make_study) -> Study:
    """Alice finishes with every check right; Bob fails a check and is excluded; Carol
    stops half-way; Dave declines consent; a participant from before ids were kept finishes."""
    study = paid_study(make_study, "prolific")
    finish(arrive(study, ALICE.upper()))
    finish(arrive(study, BOB), wrong_on_checks)
    labeling_services.enter_study(study, "prolific", CAROL, {})
    dave = labeling_services.enter_study(study, "prolific", DAVE, {})
    labeling_services.decline_consent(dave)
    legacy = Participant.objects.create(study=study, source="prolific", external_id_hash="ab" * 32)
    labeling_services.complete_participation(legacy)
    bob = Participant.objects.get(
        external_id_hash=labeling_services.external_id_hash("prolific", BOB)
    )
    assert bob.completed_at is not None
    assert reason(study)
    return study


def download(client: Client, study: Study, name: str):
    return client.get(f"/researcher/studies/{study.pk}/payments/{name}")


def test_prolifics_bulk_bonus_file_pays_completed_participants_who_are_not_excluded(
    researcher_client: Client, researcher: User, prolific_study: Study
) -> None:
    response = download(researcher_client, prolific_study, "prolific-bonuses.csv")

    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"] == (
        f'attachment; filename="study-{prolific_study.pk}-prolific-bonuses.csv"'
    )
    # No header, "<participant_id>,<amount>": 2 checks x 0.10 + 4 items x 0.05.
    assert response.content.decode() == f"{ALICE},0.40\n"
    record = PaymentFileDownload.objects.get()
    assert (record.study, record.downloaded_by, record.file, record.rows) == (
        prolific_study,
        researcher,
        "prolific-bonuses.csv",
        1,
    )


def test_prolifics_approval_list_has_one_id_a_line(
    researcher_client: Client, prolific_study: Study
) -> None:
    response = download(researcher_client, prolific_study, "prolific-approvals.txt")

    assert response["Content-Type"] == "text/plain; charset=utf-8"
    assert response.content.decode() == f"{ALICE}\n"  # not the excluded, unfinished or legacy
    assert PaymentFileDownload.objects.get().file == "prolific-approvals.txt"


def test_the_payments_file_lists_everyone_with_outcome_bonus_and_reason(
    researcher_client: Client, prolific_study: Study
) -> None:
    lines = download(researcher_client, prolific_study, "payments.csv").content.decode()

    assert lines.splitlines() == [
        "platform,participant_id,assignment_id,outcome,bonus,reason",
        f"prolific,{ALICE},,approve,0.40,",
        # Excluded while labelling: Prolific had them back with the screen-out code.
        f"prolific,{BOB},,screened out,0.00,{reason(prolific_study)}",
        f"prolific,{CAROL},,not completed,0.00,",
        f"prolific,{DAVE},,declined consent,0.00,",
        "prolific,,,approve,0.00,recruiter id not stored or unreadable",
    ]


def test_mturks_review_file_approves_and_rejects_with_the_reason(
    researcher_client: Client, make_study
) -> None:
    study = paid_study(make_study, "mturk")
    finish(arrive(study, WORKER_ALICE.lower(), assignment="ASG1"))
    finish(arrive(study, WORKER_BOB, assignment="ASG2"), wrong_on_checks)
    arrive(study, WORKER_CAROL, assignment="ASG3")  # has not submitted the HIT

    review = download(researcher_client, study, "mturk-review.csv")
    summary = download(researcher_client, study, "payments.csv")

    assert review.content.decode().splitlines() == [
        "AssignmentId,WorkerId,Approve,Reject",  # the Amazon results file's columns
        f"ASG1,{WORKER_ALICE},x,",
        f"ASG2,{WORKER_BOB},,{reason(study)}",
    ]
    assert summary.content.decode().splitlines()[1:] == [
        f"mturk,{WORKER_ALICE},ASG1,approve,0.40,",
        f"mturk,{WORKER_BOB},ASG2,reject,0.00,{reason(study)}",
        f"mturk,{WORKER_CAROL},ASG3,not completed,0.00,",
    ]
    assert download(researcher_client, study, "prolific-bonuses.csv").status_code == 404
    assert sorted(PaymentFileDownload.objects.values_list("file", "rows")) == [
        ("mturk-review.csv", 2),
        ("payments.csv", 3),
    ]


def test_a_formula_in_a_reason_is_not_run_by_a_spreadsheet(
    researcher_client: Client, prolific_study: Study
) -> None:
    Participant.objects.filter(study=prolific_study, excluded=True).update(
        exclusion_reasons=['=HYPERLINK("http://evil")']
    )
    lines = download(researcher_client, prolific_study, "payments.csv").content.decode()
    assert f'prolific,{BOB},,screened out,0.00,"\'=HYPERLINK(""http://evil"")"' in lines


@pytest.mark.parametrize("role", ["view", "edit"])
def test_only_the_owner_downloads_and_a_refusal_records_nothing(
    researcher: User, prolific_study: Study, role: str
) -> None:
    collaborator = User.objects.create_user("colleague", password=PASSWORD, is_staff=True)
    services.add_collaborator(prolific_study, "colleague", role, by=researcher)
    client = Client()
    client.force_login(collaborator)

    refused = download(client, prolific_study, "prolific-bonuses.csv")
    page = client.get(f"/researcher/studies/{prolific_study.pk}/").content.decode()

    assert refused.status_code == 404
    assert "Only the study's owner downloads its payment files." in page
    assert "prolific-bonuses.csv" not in page
    assert not PaymentFileDownload.objects.exists()


def test_an_open_link_study_has_no_payment_files(researcher_client: Client, make_study) -> None:
    study = make_study()
    assert download(researcher_client, study, "payments.csv").status_code == 404
    page = researcher_client.get(f"/researcher/studies/{study.pk}/").content.decode()
    assert "<h2>Payments</h2>" not in page
    assert not PaymentFileDownload.objects.exists()


def test_the_study_page_links_the_files_and_lists_the_downloads(
    researcher_client: Client, prolific_study: Study
) -> None:
    download(researcher_client, prolific_study, "prolific-bonuses.csv")

    page = researcher_client.get(f"/researcher/studies/{prolific_study.pk}/").content.decode()

    links = re.findall(r'data-file="([^"]+)"', page)
    assert links == ["prolific-bonuses.csv", "prolific-approvals.txt", "payments.csv"]
    downloads = re.search(r'<table id="payment-downloads">(.*?)</table>', page, re.S).group(1)
    assert "<code>prolific-bonuses.csv</code></td><td>1</td>" in downloads
    assert "researcher" in downloads
    assert "0.10 per attention check answered right" in page


# ---- the designer's fields ----


def test_the_designer_sets_bonuses_and_excluded_studies_both_ways(
    researcher_client: Client, researcher: User, settings_of_a_study, make_study, outsider: User
) -> None:
    earlier = make_study()
    form = designer_form(
        settings_of_a_study,
        recruitment="prolific",
        exclude_participants_of=[earlier.pk],
        bonus_per_attention_check="0.25",
        bonus_per_item="0.02",
    )

    response = researcher_client.post("/researcher/studies/new/", form)

    assert response.status_code == 302, response.content.decode()[:3000]
    draft = Study.objects.exclude(pk=earlier.pk).get()
    assert list(draft.exclude_participants_of.all()) == [earlier]
    assert list(earlier.exclude_participants_of.all()) == [draft]  # symmetric
    assert (draft.bonus_per_attention_check, draft.bonus_per_item) == (
        Decimal("0.25"),
        Decimal("0.02"),
    )
    page = researcher_client.get(f"/researcher/studies/{draft.pk}/").content.decode()
    assert f'href="/researcher/studies/{earlier.pk}/">study {earlier.pk}</a>' in page
    copy = researcher_client.get(f"/researcher/studies/new/?from={draft.pk}").content.decode()
    assert re.search(rf'value="{earlier.pk}"[^>]*checked', copy)


def test_the_designer_refuses_to_exclude_others_studies_or_on_an_open_link(
    researcher_client: Client, settings_of_a_study, other_researcher_study: Study, make_study
) -> None:
    mine = make_study()
    foreign = researcher_client.post(
        "/researcher/studies/new/",
        designer_form(
            settings_of_a_study,
            recruitment="prolific",
            exclude_participants_of=[other_researcher_study.pk],
        ),
    )
    open_link = researcher_client.post(
        "/researcher/studies/new/",
        designer_form(settings_of_a_study, recruitment="open", exclude_participants_of=[mine.pk]),
    )

    assert foreign.status_code == open_link.status_code == 400
    assert "Select a valid choice" in foreign.content.decode()
    assert "only Prolific and MTurk ids recognise a person" in open_link.content.decode()
    assert Study.objects.count() == 2  # no new draft


@pytest.mark.parametrize(
    ("recruitment", "outcome", "expected"),
    [
        ("prolific", "screen_out", "screened out"),
        ("prolific", "completion", "withhold"),
        ("prolific", "no_code", "no code"),
        ("mturk", "screen_out", "reject"),  # MTurk has no screen-out: the HIT was submitted
        ("mturk", "completion", "reject"),
        ("mturk", "no_code", "no code"),
    ],
)
def test_an_excluded_participants_payment_follows_the_end_they_were_given(
    researcher_client: Client, make_study, recruitment: str, outcome: str, expected: str
) -> None:
    study = configure(paid_study(make_study, recruitment), excluded_outcome=outcome)
    mturk = recruitment == "mturk"
    bob, assignment = (WORKER_BOB, "ASG2") if mturk else (BOB, "")
    finish(arrive(study, bob, assignment=assignment), wrong_on_checks)

    lines = download(researcher_client, study, "payments.csv").content.decode().splitlines()

    assert lines[1:] == [f"{recruitment},{bob},{assignment},{expected},0.00,{reason(study)}"]
    if mturk:  # with no code there was no HIT to submit, and nothing to review
        review = download(researcher_client, study, "mturk-review.csv").content.decode()
        assert (f"ASG2,{bob},,{reason(study)}" in review) == (expected == "reject")
    else:
        assert download(researcher_client, study, "prolific-approvals.txt").content == b""


def test_one_excluded_by_hand_after_finishing_submitted_the_completion_code(
    researcher_client: Client, researcher: User, make_study
) -> None:
    from labeling.services.exclusion import exclude_participant

    study = paid_study(make_study, "prolific")
    alice = arrive(study, ALICE)
    finish(alice)

    exclude_participant(study, alice, "Answered in another tab", by=researcher)

    lines = download(researcher_client, study, "payments.csv").content.decode().splitlines()
    assert lines[1:] == [f"prolific,{ALICE},,withhold,0.00,Answered in another tab"]
    assert download(researcher_client, study, "prolific-bonuses.csv").content == b""
