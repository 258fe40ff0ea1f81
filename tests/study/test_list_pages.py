"""The researcher's lists of studies, models, attack settings and jobs (study/lists.py,
attacks/lists.py): each holds only what the signed-in researcher may see, newest first,
fifty to a page, and an empty one says what to do next.

Runs on SQLite as well: DATABASE_URL=sqlite:///<file> pytest tests/study/test_list_pages.py
"""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from django.test import Client

from attacks.models import (
    AttackSetting,
    ClassifierModel,
    GenerationJob,
    JobStatus,
    ModelCollaborator,
    SharingRole,
)
from study.design import StudyDesign
from study.models import Study, StudyItem
from study.services import create_draft_study
from tests.study.conftest import MakeSetting, owned_by, signed_in

LISTS = [
    "/researcher/studies/",
    "/researcher/models/",
    "/researcher/settings/",
    "/researcher/jobs/",
]
ROW = re.compile(r'<tr data-(?:study|model|setting|job)="(\d+)"')

pytestmark = pytest.mark.django_db


def _model(name: str, owner: User | None, **fields: object) -> ClassifierModel:
    return ClassifierModel.objects.create(
        name=name,
        architecture="small_cnn",
        dataset="mnist",
        training_split="test",
        training_start=0,
        training_stop=100,
        created_by=owner,
        **fields,
    )


def _row_ids(client: Client, url: str) -> list[int]:
    answer = client.get(url)
    assert answer.status_code == 200, url
    return [int(found) for found in ROW.findall(answer.content.decode())]


def _bare_studies(owner: User, count: int) -> list[Study]:
    """Studies with no items, made straight in the database: only their rows are listed."""
    return Study.objects.bulk_create(
        Study(
            title=f"study {number}",
            instructions="Which digit?",
            owner=owner,
            label_choices=[{"value": 0, "text": "0"}],
            items_per_participant=1,
            labels_per_item=1,
            status=Study.Status.DRAFT,
        )
        for number in range(count)
    )


# Given two researchers, each with a study, a model, a setting and its job:
# each list holds the researcher's own rows, the shared and the public ones, never the other's.


def test_no_list_shows_another_researchers_rows(
    researcher: User, outsider: User, make_setting: MakeSetting, full_design: StudyDesign
) -> None:
    mine = create_draft_study(owner=researcher, design=full_design)
    theirs = Study.objects.create(
        title="Their secret study",
        instructions="x",
        owner=outsider,
        label_choices=[{"value": 0, "text": "0"}],
        items_per_participant=1,
        labels_per_item=1,
    )
    for setting in full_design.samples:
        owned_by(researcher, setting.setting)
    their_setting = owned_by(
        outsider, make_setting("their-secret-setting", AttackSetting.Kind.SENSITIVITY, [1, 2])
    )
    my_model = _model("my-model", researcher)
    their_model = _model("their-secret-model", outsider)
    shared_model = _model("their-shared-model", outsider)
    ModelCollaborator.objects.create(model=shared_model, user=researcher, role=SharingRole.VIEW)
    public_model = _model("zoo-model", None)
    client = signed_in(researcher)

    studies = _row_ids(client, "/researcher/studies/")
    models = _row_ids(client, "/researcher/models/")
    settings = _row_ids(client, "/researcher/settings/")
    jobs = _row_ids(client, "/researcher/jobs/")

    assert mine.pk in studies
    assert theirs.pk not in studies
    assert models == [public_model.pk, shared_model.pk, my_model.pk]  # newest first
    assert their_model.pk not in models
    assert their_setting.pk not in settings
    assert their_setting.jobs.get().pk not in jobs
    for url in LISTS:
        page = client.get(url).content.decode()
        assert "their-secret" not in page, url
        assert "Their secret" not in page, url
    assert _row_ids(signed_in(outsider), "/researcher/studies/") == [theirs.pk]
    assert their_model.pk in _row_ids(signed_in(outsider), "/researcher/models/")


def test_a_superuser_sees_every_row(
    researcher: User, outsider: User, make_setting: MakeSetting
) -> None:
    boss = User.objects.create_superuser("boss", password="a-long-test-password")
    their_model = _model("their-model", outsider)
    their_setting = owned_by(outsider, make_setting("theirs", AttackSetting.Kind.CLEAN, [3]))

    client = signed_in(boss)

    assert their_model.pk in _row_ids(client, "/researcher/models/")
    assert their_setting.pk in _row_ids(client, "/researcher/settings/")
    assert their_setting.jobs.get().pk in _row_ids(client, "/researcher/jobs/")


# Given a study: its row says its status, its items and its labels so far, and links to it.


def test_a_study_row_counts_its_items_and_labels_as_the_study_page_does(
    researcher: User, full_design: StudyDesign
) -> None:
    study = create_draft_study(owner=researcher, design=full_design)
    items = StudyItem.objects.filter(study=study, kind=StudyItem.Kind.MAIN).order_by("pk")
    StudyItem.objects.filter(pk=items[0].pk).update(labelled_count=2)
    # Past k (3) after a re-inclusion: counts as k, as the study page's progress counts it.
    StudyItem.objects.filter(pk=items[1].pk).update(labelled_count=5)
    # Practice and attention labels are never counted.
    StudyItem.objects.filter(study=study, kind=StudyItem.Kind.PRACTICE).update(labelled_count=9)

    page = signed_in(researcher).get("/researcher/studies/").content.decode()

    row = re.search(rf'<tr data-study="{study.pk}">(.*?)</tr>', page, re.S)
    assert row is not None
    cells = [re.sub(r"<[^>]+>", "", cell).strip() for cell in re.findall(r"<td>(.*?)</td>", row[1])]
    assert cells[:5] == ["Which digit?", "draft", "20", "5 of 60", "you"]
    assert f'href="/researcher/studies/{study.pk}/"' in row[1]


def test_each_row_links_to_its_detail_page(researcher: User, make_setting: MakeSetting) -> None:
    setting = owned_by(researcher, make_setting("pgd", AttackSetting.Kind.SENSITIVITY, [1, 2, 3]))
    AttackSetting.objects.filter(pk=setting.pk).update(norm="linf", eps=0.3)
    model = _model("tiny", researcher, clean_accuracy=0.9876, robust_accuracy=0.5)
    job = setting.jobs.get()
    GenerationJob.objects.filter(pk=job.pk).update(done=2)
    client = signed_in(researcher)

    models = client.get("/researcher/models/").content.decode()
    settings = client.get("/researcher/settings/").content.decode()
    jobs = client.get("/researcher/jobs/").content.decode()

    assert f'href="/researcher/models/{model.pk}/"' in models
    assert "<td>0.9876</td>" in models
    assert "<td>0.5000</td>" in models
    assert "<td>small_cnn</td>" in models
    assert f'href="/researcher/settings/{setting.pk}/"' in settings
    assert "L-inf eps 0.3" in settings
    assert "<td>pgd_linf</td>" in settings
    assert re.search(r"<td>3</td>", settings)  # its examples
    assert f'href="/researcher/jobs/{job.pk}/"' in jobs
    assert "<td>2 of 3</td>" in jobs
    assert "sensitivity generation" in jobs


# Given more rows than a page holds: fifty a page, newest first, and a bad page number
# gives a page, never an error; the queries do not grow with the rows on a page.


def test_studies_are_paginated_newest_first(researcher: User) -> None:
    studies = _bare_studies(researcher, 60)
    newest_first = sorted((study.pk for study in studies), reverse=True)
    client = signed_in(researcher)

    first = _row_ids(client, "/researcher/studies/")
    second = _row_ids(client, "/researcher/studies/?page=2")

    assert first == newest_first[:50]
    assert second == newest_first[50:]
    assert _row_ids(client, "/researcher/studies/?page=99") == second
    assert _row_ids(client, "/researcher/studies/?page=nonsense") == first
    assert "Page 1 of 2 (60 in all)" in client.get("/researcher/studies/").content.decode()


def test_models_settings_and_jobs_are_paginated(
    researcher: User, make_setting: MakeSetting
) -> None:
    ClassifierModel.objects.bulk_create(
        ClassifierModel(
            name=f"model-{number}",
            architecture="small_cnn",
            dataset="mnist",
            training_split="test",
            training_start=0,
            training_stop=10,
            created_by=researcher,
        )
        for number in range(55)
    )
    setting = owned_by(researcher, make_setting("many", AttackSetting.Kind.CLEAN, [1]))
    AttackSetting.objects.bulk_create(
        AttackSetting(
            name=f"setting-{number}",
            kind=AttackSetting.Kind.CLEAN,
            attack_name="clean",
            dataset="mnist",
            source_split="test",
            source_start=0,
            source_stop=1,
            seed=0,
            created_by=researcher,
        )
        for number in range(55)
    )
    GenerationJob.objects.bulk_create(
        GenerationJob(setting=setting, offset=0, count=1, status=JobStatus.QUEUED)
        for _ in range(55)
    )
    client = signed_in(researcher)

    for url, total in [
        ("/researcher/models/", 55),
        ("/researcher/settings/", 56),
        ("/researcher/jobs/", 56),
    ]:
        first, second = _row_ids(client, url), _row_ids(client, f"{url}?page=2")
        assert len(first) == 50, url
        assert len(second) == total - 50, url
        assert first + second == sorted(first + second, reverse=True), url


@pytest.mark.parametrize("url", LISTS)
def test_a_page_costs_the_same_queries_for_five_rows_or_fifty(
    url: str, researcher: User, make_setting: MakeSetting, django_assert_max_num_queries
) -> None:
    # session, user, count, rows, and the settings' or studies' counts for the page
    setting = owned_by(researcher, make_setting("jobs", AttackSetting.Kind.CLEAN, [1]))
    _bare_studies(researcher, 60)
    for number in range(60):
        _model(f"model-{number}", researcher)
    GenerationJob.objects.bulk_create(
        GenerationJob(setting=setting, offset=0, count=1) for _ in range(60)
    )
    client = signed_in(researcher)

    with django_assert_max_num_queries(5):
        assert client.get(url).status_code == 200


# Given a researcher with nothing yet: each list says so, and links to where to begin.


@pytest.mark.parametrize(
    ("url", "next_step"),
    [
        ("/researcher/studies/", "/researcher/studies/new/"),
        ("/researcher/models/", "/researcher/models/new/"),
        ("/researcher/settings/", "/researcher/settings/new/"),
        ("/researcher/jobs/", "/researcher/settings/"),
    ],
)
def test_an_empty_list_says_what_to_do_next(url: str, next_step: str, researcher: User) -> None:
    page = signed_in(researcher).get(url).content.decode()

    empty = re.search(r'<p id="empty-list">(.*?)</p>', page, re.S)
    assert empty is not None, url
    assert f'href="{next_step}"' in empty[1]
    assert "<table" not in page


# Given someone who is not a researcher: no list opens.


@pytest.mark.parametrize("url", LISTS)
def test_the_lists_are_for_researchers_only(url: str) -> None:
    annotator = User.objects.create_user("annotator", password="a-long-test-password")

    assert Client().get(url).status_code == 302  # to the sign-in page
    assert signed_in(annotator).get(url).status_code == 403


# The navigation: for signed-in researchers only, with the lists; the admin for those it
# shows something to.


def test_the_sign_in_page_shows_no_researcher_navigation() -> None:
    page = Client().get("/accounts/login/").content.decode()

    assert "<nav" not in page
    assert "/researcher/" not in page.replace('name="next" value=""', "")


def test_a_researcher_sees_the_lists_but_not_the_admin_in_the_navigation(
    researcher: User,
) -> None:
    page = signed_in(researcher).get("/researcher/").content.decode()

    nav = re.search(r'<nav aria-label="Researcher">(.*?)</nav>', page, re.S)
    assert nav is not None
    for url in LISTS:
        assert f'href="{url}"' in nav[1]
    assert 'href="/admin/"' not in nav[1]  # where a researcher without rights finds nothing
    assert 'href="/accounts/invite/"' not in nav[1]
    for url in LISTS:
        assert f'href="{url}"' in page.split("</nav>", 1)[1], f"home links {url}"


def test_a_superuser_sees_the_invite_page_in_the_navigation() -> None:
    boss = User.objects.create_superuser("boss", password="a-long-test-password")

    page = signed_in(boss).get("/researcher/studies/").content.decode()

    assert 'href="/admin/"' in page
    assert 'href="/accounts/invite/"' in page


def test_the_home_page_shows_the_newest_ten_studies_and_links_to_all(researcher: User) -> None:
    studies = sorted(study.pk for study in _bare_studies(researcher, 12))

    home = signed_in(researcher).get("/researcher/").content.decode()

    shown = {int(pk) for pk in re.findall(r'href="/researcher/studies/(\d+)/"', home)}
    assert shown == set(studies[2:])
    assert 'href="/researcher/studies/">All studies</a>' in home
