"""Models, settings, jobs and examples belong to their owner and are shared explicitly.

Every researcher URL of the attacks app and every REST endpoint of models, settings and
jobs is enumerated from the resolver and looked up in ``NEED``, the access it asks for,
so a URL added later without a rule here fails ``test_every_url_has_a_rule``. Each
persona then calls each: below the access asked for is a 404 that changes nothing (as
``study_for`` answers), at or above it is not refused. The personas: the owner, a
viewer and an editor the owner shared with, a member of a lab group shared to edit, and
an outsider. The zoo (models without an owner) stays readable by all, and a study's
readers see its images through the study, whoever owns the settings.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Group, User
from django.db import transaction
from django.db.models import ProtectedError
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from rest_framework.test import APIClient

from attacks import services, sharing, tasks
from attacks.api import AttackSettingViewSet, ClassifierModelViewSet, GenerationJobViewSet
from attacks.engine.zoo import zoo_entry, zoo_weights
from attacks.models import (
    AttackSetting,
    ClassifierModel,
    GenerationJob,
    JobStatus,
    ModelCollaborator,
    SettingCollaborator,
    SharingRole,
)
from attacks.queries import Access
from study import services as study_services
from study.services import SettingSample

VIEW, EDIT, OWN = Access.VIEW, Access.EDIT, Access.OWN
LIST = "list"  # a list: 200 for every researcher, holding only what each may see
# Pages that make something new and so name no row: every researcher may open them.
CREATION_PAGES = {"model-create", "model-register", "setting-create", "examples-import"}
# URL name -> (method, access it needs, the row its id names).
NEED: dict[str, tuple[str, Access | str, str]] = {
    "model-detail": ("get", VIEW, "model"),
    "model-status": ("get", VIEW, "model"),
    "model-share": ("post", OWN, "model"),
    "model-unshare": ("post", OWN, "model"),
    "setting-detail": ("get", VIEW, "setting"),
    "job-create": ("post", EDIT, "setting"),
    "setting-family": ("post", EDIT, "setting"),
    "setting-share": ("post", OWN, "setting"),
    "setting-unshare": ("post", OWN, "setting"),
    "job-detail": ("get", VIEW, "job"),
    "job-status": ("get", VIEW, "job"),
    "example-image": ("get", VIEW, "example"),
    "api-model-list": ("get", LIST, "model"),
    "api-model-detail": ("get", VIEW, "model"),
    "api-setting-list": ("get", LIST, "setting"),
    "api-setting-detail": ("get", VIEW, "setting"),
    "api-job-list": ("get", LIST, "job"),
    "api-job-detail": ("get", VIEW, "job"),
    "api-job-cancel": ("post", EDIT, "queued job"),
    "api-job-retry": ("post", EDIT, "cancelled job"),
    "api-model-collaborators": ("get", VIEW, "model"),
    "api-model-collaborator": ("delete", OWN, "model"),
    "api-setting-collaborators": ("get", VIEW, "setting"),
    "api-setting-collaborator": ("delete", OWN, "setting"),
}
# Writes to an endpoint besides its GET: (URL name, method, access, body, answer when allowed).
WRITES: list[tuple[str, str, Access, dict[str, Any], int]] = [
    # Allowed through, then refused for what the row is: a generated setting has no family.
    ("api-setting-detail", "patch", EDIT, {"family": ""}, 400),
    ("api-setting-collaborators", "post", OWN, {"username": "outsider", "role": "edit"}, 201),
    ("api-model-collaborators", "post", OWN, {"group": "vision lab", "role": "view"}, 201),
]
# Allowed through, then refused for what the row is: a generated setting has no family to name.
ALLOWED_STATUS = {"setting-family": 400}
ACCESS_OF = {"owner": OWN, "editor": EDIT, "lab member": EDIT, "viewer": VIEW, "outsider": None}
PERSONAS = tuple(ACCESS_OF)
ATTACK_VIEWSETS = (ClassifierModelViewSet, AttackSettingViewSet, GenerationJobViewSet)


def _patterns(entries: list) -> Iterator[URLPattern]:
    for entry in entries:
        if isinstance(entry, URLResolver):
            yield from _patterns(entry.url_patterns)
        elif isinstance(entry, URLPattern):
            yield entry


def attack_url_names() -> set[str]:
    """Every named URL served by the attacks app's pages or its API viewsets."""
    names = set()
    for pattern in _patterns(get_resolver().url_patterns):
        callback = pattern.callback
        ours = callback.__module__ == "attacks.views" or getattr(callback, "cls", None) in (
            ATTACK_VIEWSETS
        )
        if ours and pattern.name:
            names.add(pattern.name)
    return names


@dataclass(frozen=True)
class World:
    owner: User
    users: dict[str, User]
    model: ClassifierModel
    zoo: ClassifierModel
    setting: AttackSetting
    job: GenerationJob
    queued: GenerationJob
    cancelled: GenerationJob
    share: SettingCollaborator
    model_share: ModelCollaborator

    def row_id(self, row: str) -> int:
        return {
            "model": self.model.pk,
            "setting": self.setting.pk,
            "job": self.job.pk,
            "queued job": self.queued.pk,
            "cancelled job": self.cancelled.pk,
            "example": self.setting.examples.first().pk,
        }[row]

    def url(self, name: str) -> str:
        route = get_resolver().reverse_dict.getlist(name)[0][0][0][1]
        row_id = self.row_id(NEED[name][2])
        share = self.model_share if name.startswith("model-") else self.share
        values = {"collaborator_id": share.pk, "pk": row_id}
        kwargs = {key: values.get(key, row_id) for key in route if key != "format"}
        return reverse(name, kwargs=kwargs)

    def client(self, persona: str) -> APIClient:
        client = APIClient()
        client.force_login(self.users[persona])
        return client


def _researcher(name: str) -> User:
    return User.objects.create_user(name, is_staff=True)  # force_login needs no password


def _owned_setting(owner: User, name: str) -> AttackSetting:
    return services.create_attack_setting(
        name=name,
        attack_name="clean",
        config={},
        dataset="mnist",
        source_split="test",
        source_range=(9000, 9100),
        seed=0,
        created_by=owner,
    )


def _shipped_model(name: str, owner: User | None) -> ClassifierModel:
    """A zoo model with its real weights (generation predicts with every ready model)."""
    model = services.register_zoo_model(zoo_entry(name), zoo_weights(zoo_entry(name)))[0]
    ClassifierModel.objects.filter(pk=model.pk).update(created_by=owner)
    model.refresh_from_db()
    return model


@pytest.fixture
def world(researcher: User, outsider: User) -> World:
    """The owner's model, setting (4 examples), a queued and a cancelled job, and shares."""
    users = {"owner": researcher, "outsider": outsider}
    users.update({name: _researcher(name) for name in ("viewer", "editor", "lab member")})
    lab = Group.objects.create(name="vision lab")
    users["lab member"].groups.add(lab)
    model = _shipped_model("mnist-small-cnn-fgsm-rs-0.3", researcher)
    setting = _owned_setting(researcher, "owned-clean")
    job = services.create_generation_job(setting, 4, created_by=researcher)
    tasks.run_generation_job(job.pk)
    queued = services.create_generation_job(setting, 2, created_by=researcher)
    cancelled = services.create_generation_job(setting, 2, created_by=researcher)
    GenerationJob.objects.filter(pk=cancelled.pk).update(status=JobStatus.CANCELLED)
    for item in (model, setting):
        sharing.share(item, role=SharingRole.VIEW, by=researcher, username="viewer")
        sharing.share(item, role=SharingRole.EDIT, by=researcher, username="editor")
        sharing.share(item, role=SharingRole.EDIT, by=researcher, group="vision lab")
    share = setting.collaborators.get(user__username="viewer")
    model_share = model.collaborators.get(user__username="viewer")
    return World(
        owner=researcher,
        users=users,
        model=model,
        zoo=_shipped_model("mnist-small-cnn-standard", None),
        setting=setting,
        job=job,
        queued=queued,
        cancelled=cancelled,
        share=share,
        model_share=model_share,
    )


def state() -> dict[str, Any]:
    """What a refused request must leave as it was."""
    return {
        "jobs": list(GenerationJob.objects.order_by("pk").values_list("pk", "status", "count")),
        "settings": list(AttackSetting.objects.order_by("pk").values_list("pk", "family")),
        "setting shares": list(SettingCollaborator.objects.order_by("pk").values_list()),
        "model shares": list(ModelCollaborator.objects.order_by("pk").values_list()),
    }


def _body(name: str) -> dict[str, Any]:
    """A body the endpoint accepts from someone with the access it needs."""
    bodies: dict[str, dict[str, Any]] = {
        "job-create": {"count": 1, "chunk_size": 64},
        "setting-family": {"family": ""},
        "model-share": {"username": "outsider", "role": "view"},
        "setting-share": {"username": "outsider", "role": "view"},
    }
    return bodies.get(name, {})


def test_every_url_has_a_rule() -> None:
    assert attack_url_names() == NEED.keys() | CREATION_PAGES


def test_the_personas_have_the_access_they_are_given(world: World) -> None:
    from attacks.queries import model_access, setting_access

    for persona, access in ACCESS_OF.items():
        assert setting_access(world.setting, world.users[persona]) == access, persona
    assert model_access(world.model, world.users["lab member"]) == EDIT
    assert model_access(world.zoo, world.users["outsider"]) == VIEW


def _answers_as_access_allows(world: World, name: str, persona: str) -> None:
    method, need, _ = NEED[name]
    assert isinstance(need, Access)
    before = state()

    response = getattr(world.client(persona), method)(world.url(name), _body(name))

    access = ACCESS_OF[persona]
    if access is None or access < need:
        assert response.status_code == 404, (name, persona, response.status_code)
        assert state() == before
    elif name in ALLOWED_STATUS:
        assert response.status_code == ALLOWED_STATUS[name]
        assert "only imported sets are named by hand" in response.content.decode()
    else:
        assert response.status_code in (200, 201, 204, 302), (name, persona, response.status_code)


READS = sorted(name for name in NEED if NEED[name][0] == "get" and NEED[name][1] != LIST)


@pytest.mark.parametrize("name", READS)
def test_each_read_answers_each_persona_as_its_access_allows(world: World, name: str) -> None:
    for persona in PERSONAS:  # a GET changes nothing: every persona on the same rows
        _answers_as_access_allows(world, name, persona)


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize("name", sorted(name for name in NEED if NEED[name][0] != "get"))
def test_each_change_answers_each_persona_as_its_access_allows(
    world: World, name: str, persona: str
) -> None:
    _answers_as_access_allows(world, name, persona)


@pytest.mark.parametrize("persona", PERSONAS)
@pytest.mark.parametrize(("name", "method", "need", "body", "allowed"), WRITES)
def test_each_write_answers_each_persona_as_its_access_allows(
    world: World,
    name: str,
    method: str,
    need: Access,
    body: dict[str, Any],
    allowed: int,
    persona: str,
) -> None:
    before = state()

    response = getattr(world.client(persona), method)(world.url(name), body, format="json")

    access = ACCESS_OF[persona]
    if access is None or access < need:
        assert response.status_code == 404
        assert state() == before
    else:
        assert response.status_code == allowed, response.content


@pytest.mark.parametrize("persona", PERSONAS)
def test_lists_hold_only_what_each_persona_may_see(world: World, persona: str) -> None:
    client = world.client(persona)
    sees = ACCESS_OF[persona] is not None

    def listed(name: str) -> set[int]:
        response = client.get(reverse(name))
        assert response.status_code == 200
        return {row["id"] for row in response.json()["results"]}

    jobs = {world.job.pk, world.queued.pk, world.cancelled.pk}
    assert listed("api-model-list") == ({world.model.pk} if sees else set()) | {world.zoo.pk}
    assert listed("api-setting-list") == ({world.setting.pk} if sees else set())
    assert listed("api-job-list") == (jobs if sees else set())
    home = client.get("/researcher/").content.decode()
    for path in (
        f"/researcher/models/{world.model.pk}/",
        f"/researcher/settings/{world.setting.pk}/",
        f"/researcher/jobs/{world.job.pk}/",
    ):
        assert (path in home) == sees, (persona, path)
    assert f"/researcher/models/{world.zoo.pk}/" in home


@pytest.mark.parametrize("persona", PERSONAS)
def test_a_job_is_created_through_the_api_only_by_those_who_may_edit(
    world: World, persona: str
) -> None:
    before = GenerationJob.objects.count()

    response = world.client(persona).post(
        reverse("api-job-list"), {"setting": world.setting.pk, "count": 1}, format="json"
    )

    access = ACCESS_OF[persona]
    if access is not None and access >= EDIT:
        assert response.status_code == 201
        assert GenerationJob.objects.count() == before + 1
        assert GenerationJob.objects.latest("pk").created_by == world.users[persona]
    else:  # the same answer as for a setting that does not exist
        assert response.status_code == 400
        assert response.json() == {"setting": ["no such attack setting"]}
        assert GenerationJob.objects.count() == before


def test_editors_cancel_and_retry_and_the_database_says_so(world: World) -> None:
    editor = world.client("editor")

    cancelled = editor.post(reverse("api-job-cancel", args=[world.queued.pk]))
    retried = editor.post(reverse("api-job-retry", args=[world.cancelled.pk]))

    assert (cancelled.status_code, retried.status_code) == (200, 200)
    world.queued.refresh_from_db()
    world.cancelled.refresh_from_db()
    assert (world.queued.status, world.cancelled.status) == (JobStatus.CANCELLED, JobStatus.QUEUED)


def test_the_setting_page_offers_writes_only_to_those_who_may_make_them(world: World) -> None:
    url = reverse("setting-detail", args=[world.setting.pk])
    pages = {persona: world.client(persona).get(url).content.decode() for persona in ACCESS_OF}

    assert "Queue generation job" not in pages["viewer"]
    assert "Queue generation job" in pages["editor"]
    assert 'action="/researcher/settings/' + str(world.setting.pk) + '/share/"' in pages["owner"]
    assert "/share/" not in pages["editor"]
    assert 'data-collaborator="group vision lab"' in pages["viewer"]


def test_the_owner_shares_and_unshares_on_the_page(world: World) -> None:
    owner = world.client("owner")
    share_url = reverse("setting-share", args=[world.setting.pk])

    shared = owner.post(share_url, {"username": "outsider", "role": "edit"})
    row = world.setting.collaborators.get(user=world.users["outsider"])
    seen = world.client("outsider").get(reverse("setting-detail", args=[world.setting.pk]))
    removed = owner.post(reverse("setting-unshare", args=[world.setting.pk, row.pk]))
    unseen = world.client("outsider").get(reverse("setting-detail", args=[world.setting.pk]))

    assert shared.status_code == 302
    assert row.role == SharingRole.EDIT
    assert seen.status_code == 200
    assert removed.status_code == 302
    assert not world.setting.collaborators.filter(user=world.users["outsider"]).exists()
    assert unseen.status_code == 404


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"username": "nobody", "role": "view"}, "No researcher is called"),
        ({"group": "no such lab", "role": "view"}, "No group is called"),
        ({"role": "view"}, "name one of the two"),
        ({"username": "outsider", "group": "vision lab", "role": "view"}, "name one of the two"),
        ({"username": "researcher", "role": "view"}, "The owner already has every right"),
        ({"username": "outsider", "role": "own"}, "Select a valid choice"),
    ],
)
def test_a_bad_share_is_a_400_that_shares_nothing(world: World, body, message) -> None:
    before = state()

    response = world.client("owner").post(reverse("model-share", args=[world.model.pk]), body)

    assert response.status_code == 400
    assert message in response.content.decode()
    assert state() == before


def test_the_zoo_is_readable_by_all_and_changed_by_none(world: World) -> None:
    outsider = world.client("outsider")

    assert outsider.get(reverse("model-detail", args=[world.zoo.pk])).status_code == 200
    assert outsider.get(reverse("api-model-detail", args=[world.zoo.pk])).status_code == 200
    shared = world.client("owner").post(
        reverse("model-share", args=[world.zoo.pk]), {"username": "outsider", "role": "edit"}
    )
    assert shared.status_code == 404
    assert not world.zoo.collaborators.exists()


def test_an_owner_of_rows_cannot_be_deleted_for_they_would_become_public(world: World) -> None:
    with pytest.raises(ProtectedError), transaction.atomic():
        world.owner.delete()

    assert world.setting.created_by_id == world.owner.pk
    outsider = world.client("outsider")
    assert outsider.get(reverse("setting-detail", args=[world.setting.pk])).status_code == 404


@pytest.mark.parametrize(("model", "allowed"), [("zoo", True), ("model", False)])
def test_a_setting_targets_only_a_model_its_maker_may_see(
    world: World, model: str, allowed: bool
) -> None:
    target = getattr(world, model)
    body = {
        "name": "pgd-of-outsider",
        "attack_name": "pgd_linf",
        "config": {"eps": 0.3, "steps": 10},
        "dataset": "mnist",
        "source_start": 9000,
        "source_stop": 9100,
        "target_model": target.pk,
    }

    response = world.client("outsider").post(reverse("api-setting-list"), body, format="json")
    page = world.client("outsider").post(
        reverse("setting-create"),
        {**body, "name": "page-pgd", "config": '{"eps": 0.3}', "source_split": "test", "seed": 0},
    )

    made = AttackSetting.objects.filter(name__in=["pgd-of-outsider", "page-pgd"])
    if allowed:
        assert (response.status_code, page.status_code) == (201, 302)
        assert {setting.created_by for setting in made} == {world.users["outsider"]}
    else:
        assert (response.status_code, page.status_code) == (400, 400)
        assert "target_model" in response.json()
        assert "Select a valid choice" in page.content.decode()
        assert not made.exists()


def test_a_study_reader_sees_its_images_through_the_study_only(world: World) -> None:
    """A study's viewer who is not shared the setting: its images through the study only."""
    study = study_services.create_study(
        owner=world.owner,
        title="A study",
        instructions="Which digit is this?",
        samples=[SettingSample(world.setting, 4)],
        controls=None,
        items_per_participant=4,
        labels_per_item=2,
    )
    study_services.add_collaborator(study, "outsider", "view", by=world.owner)
    outsider = world.client("outsider")
    example = study.items.filter(kind="main").first().example

    through_study = outsider.get(reverse("study-example-image", args=[study.pk, example.pk]))
    gallery = outsider.get(reverse("study-gallery", args=[study.pk])).content.decode()
    directly = outsider.get(reverse("example-image", args=[example.pk]))
    other = _owned_setting(world.owner, "not-in-the-study")
    tasks.run_generation_job(services.create_generation_job(other, 1).pk)
    not_in_study = other.examples.get()

    assert through_study.status_code == 200
    assert through_study["Content-Type"] == "image/png"
    assert reverse("study-example-image", args=[study.pk, example.pk]) in gallery
    assert world.setting.name in gallery
    assert directly.status_code == 404
    stray = outsider.get(reverse("study-example-image", args=[study.pk, not_in_study.pk]))
    assert stray.status_code == 404
    stranger = world.client("viewer")  # sees the setting, not the study
    image_url = reverse("study-example-image", args=[study.pk, example.pk])
    assert stranger.get(image_url).status_code == 404


def test_the_designer_offers_only_the_settings_its_user_may_see(world: World) -> None:
    mine = _owned_setting(world.users["outsider"], "outsiders-clean")
    tasks.run_generation_job(services.create_generation_job(mine, 2).pk)

    page = world.client("outsider").get("/researcher/studies/new/?dataset=mnist").content.decode()
    viewer_page = world.client("viewer").get("/researcher/studies/new/?dataset=mnist")

    assert "outsiders-clean" in page
    assert "owned-clean" not in page
    assert "owned-clean" in viewer_page.content.decode()
    assert "outsiders-clean" not in viewer_page.content.decode()


def test_a_superuser_sees_and_runs_everything(world: World) -> None:
    admin = User.objects.create_superuser("admin")
    client = APIClient()
    client.force_login(admin)

    assert client.get(reverse("setting-detail", args=[world.setting.pk])).status_code == 200
    assert client.post(reverse("api-job-cancel", args=[world.queued.pk])).status_code == 200
