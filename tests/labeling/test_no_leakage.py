"""Rule 2 of docs/architecture.md (nothing leaks to annotators): nothing an annotator
can reach reveals anything about the examples.

The study's examples carry distinctive secrets: a setting, attack, epsilon, model
and title nobody would write by chance, and each item a different source label,
target label and prediction. Every page, JSON answer, redirect, image and error
an annotator can reach is rendered and checked: for the secrets; for URLs that
are all opaque (no example id, no file name, no setting); for JSON keys outside
the API's own; and by comparing two participants' pages for *different* items,
which must be identical once their random ids are blanked out (a page that does
not depend on the item cannot reveal it). Images are served only to their
participant, byte for byte as stored, with no metadata chunks.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import struct
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.test import Client

from attacks.engine.datasets import load_dataset
from attacks.engine.images import encode_png
from attacks.models import (
    AttackSetting,
    ClassifierModel,
    Example,
    GenerationJob,
    JobStatus,
    Prediction,
)
from labeling.models import Assignment, Participant
from study.models import CANT_TELL, LabCode, Study, StudyItem
from tests.labeling.conftest import add_items, answer_body, api_answer, configure

SETTING = "zanzibar-setting-q7"
ATTACK = "quuxattack_linf"
EPSILON = "0.0314159"
MODEL = "obscuronet-x9"
TITLE = f"Zanzibar {ATTACK} eps {EPSILON} vs {MODEL}"
SECRETS = [SETTING, ATTACK, "quuxattack", EPSILON, MODEL, "zanzibar", "obscuronet"]
# Words only an internal field name or a leak would bring into an annotator's response.
FIELD_NAMES = [
    "source_label",
    "target_label",
    "expected_label",
    "prediction",
    "epsilon",
    "stratum",
    "shuffle_key",
    "attention",
    "control",
    "is_correct",
    "/examples/",  # the researchers' image URLs and the media folder
]
API_KEYS = {
    "assignment",
    "image",
    "progress",
    "done",
    "total",
    "phase",
    "next_image",
    "image_data",
    "next_image_data",
    "redirect",
    "stored",
    "feedback",
    "correct",
    "answer",
    "message",
    "next",
    "error",
}
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
URL_IN_HTML = re.compile(r'(?:href|src|action)="([^"]*)"')
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
BARE_PNG_CHUNKS = {b"IHDR", b"PLTE", b"tRNS", b"IDAT", b"IEND"}


def secret_study(owner: User, count: int) -> Study:
    """A study of examples whose every revealing field is distinctive."""
    model = ClassifierModel.objects.create(
        name=MODEL,
        architecture="small_cnn",
        dataset="mnist",
        training_split="test",
        training_start=0,
        training_stop=10,  # never trained: generation jobs must not try to load it
    )
    setting = AttackSetting.objects.create(
        name=SETTING,
        kind=AttackSetting.Kind.SENSITIVITY,
        attack_name=ATTACK,
        config={"eps": float(EPSILON), "steps": 77},
        dataset="mnist",
        source_split="test",
        source_start=0,
        source_stop=count,
        target_model=model,
        seed=5,
    )
    job = GenerationJob.objects.create(
        setting=setting, offset=0, count=count, status=JobStatus.SUCCEEDED, done=count
    )
    study = Study.objects.create(
        owner=owner,
        title=TITLE,
        instructions="Say which digit you see.",
        consent_text="You agree to take part in a short image study.",
        label_choices=[{"value": v, "text": str(v)} for v in range(10)]
        + [{"value": CANT_TELL, "text": "None / can't tell"}],
        items_per_participant=2,
        labels_per_item=1,
        attention_checks_per_participant=1,
        max_attention_failures=5,
    )
    data = load_dataset("mnist", "test")
    for position in range(count):
        example = _secret_example(setting, job, data, position)
        Prediction.objects.create(example=example, model=model, label=example.target_label or 0)
        StudyItem.objects.create(
            study=study, example=example, stratum=position, shuffle_key=position
        )
    return study


def _secret_example(setting, job, data, position: int) -> Example:
    png = encode_png(data.images[position])
    source = int(data.labels[position])
    example = Example(
        setting=setting,
        job=job,
        position=position,
        source_index=position,
        source_label=source,
        target_label=(source + 3) % 10,
        image_sha256=hashlib.sha256(png).hexdigest(),
        linf_distance=float(EPSILON),
    )
    example.image.save("example.png", ContentFile(png), save=False)
    example.save()
    return example


@dataclass
class Audit:
    """Every response checked, with what it must not contain."""

    study: Study
    forbidden: list[str] = field(default_factory=list)
    allowed_urls: list[re.Pattern[str]] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)
    stored_pngs: set[bytes] = field(default_factory=set)
    inline_images: int = 0

    def page(self, name: str, response: Any, status: int = 200) -> str:
        assert response.status_code == status, (name, response.status_code)
        text = response.content.decode() + response.get("Location", "")
        self._check_text(name, text)
        for url in [*URL_IN_HTML.findall(text), response.get("Location", "")]:
            self.check_url(name, url)
        self.checked.append(name)
        return text

    def api(self, name: str, response: Any, status: int = 200) -> dict:
        body = response.json()
        self.page(name, response, status)
        self._check_json(name, body)
        return body

    def image(self, name: str, response: Any, stored: bytes) -> None:
        assert response.status_code == 200, name
        payload = response.content
        assert payload == stored, name  # exactly the stored bytes, nothing added
        assert png_chunk_types(payload) <= BARE_PNG_CHUNKS, name
        assert "no-store" in response["Cache-Control"]
        self.checked.append(name)

    def check_url(self, name: str, url: str) -> None:
        if url and not url.startswith("#"):
            assert any(p.fullmatch(url) for p in self.allowed_urls), (name, url)

    def _check_text(self, name: str, text: str) -> None:
        lowered = text.lower()
        for secret in [*SECRETS, *self.forbidden, *FIELD_NAMES]:
            assert secret.lower() not in lowered, (name, secret)

    def _check_json(self, name: str, body: object) -> None:
        if isinstance(body, dict):
            assert set(body) <= API_KEYS, (name, set(body) - API_KEYS)
            for value in body.values():
                self._check_json(name, value)
        elif isinstance(body, str) and body.startswith(("/", "http")):
            self.check_url(name, body)
        elif isinstance(body, str) and body.startswith("data:"):
            # An inline image: exactly a stored PNG of the study, with bare chunks only.
            head, _, data = body.partition(",")
            assert head == "data:image/png;base64", (name, head)
            payload = base64.b64decode(data, validate=True)
            assert png_chunk_types(payload) <= BARE_PNG_CHUNKS, name
            assert payload in self.stored_pngs, name
            self.inline_images += 1


def png_chunk_types(payload: bytes) -> set[bytes]:
    assert payload.startswith(PNG_SIGNATURE)
    types, offset = set(), len(PNG_SIGNATURE)
    while offset < len(payload):
        (length,) = struct.unpack(">I", payload[offset : offset + 4])
        types.add(payload[offset + 4 : offset + 8])
        offset += 12 + length
    return types


def audit_for(study: Study) -> Audit:
    token = re.escape(study.join_token)
    examples = Example.objects.filter(study_items__study=study)
    forbidden = [TITLE]
    for example in examples:
        name = str(example.image.name)
        forbidden += [name, example.image_sha256, name[9:41]]
    code = re.escape(study.completion_code)
    screen_out = re.escape(study.screen_out_code)
    stored_pngs = set()
    for example in examples:
        with example.image.open("rb") as handle:
            stored_pngs.add(handle.read())
    return Audit(
        study,
        forbidden,
        stored_pngs=stored_pngs,
        allowed_urls=[
            re.compile(rf"/s/{token}/(|consent/|instructions/|label/|done/|declined/|withdraw/)"),
            re.compile(rf"/s/{token}/image/{UUID.pattern}/"),
            re.compile(r"data:image/png;base64,[A-Za-z0-9+/=]+"),  # the image, inline
            re.compile(rf"/s/{token}/example\.png"),
            re.compile(rf"/s/{token}/api/(next|labels)"),
            re.compile(
                rf"https://app\.prolific\.com/submissions/complete\?cc=({code}|{screen_out})"
            ),
            re.compile(r"https://(www|workersandbox)\.mturk\.com/mturk/externalSubmit"),
        ],
    )


def stored_bytes(assignment_id: str) -> bytes:
    assignment = Assignment.objects.select_related("item__example").get(public_id=assignment_id)
    with assignment.item.example.image.open("rb") as handle:
        return handle.read()


def blank_ids(text: str, study: Study) -> str:
    text = UUID.sub("<uuid>", text)
    text = re.sub(r"data:image/png;base64,[A-Za-z0-9+/=]+", "<the image itself>", text)
    return re.sub(r'name="csrfmiddlewaretoken" value="[^"]+"', "<csrf>", text)


@pytest.fixture
def study(researcher: User) -> Study:
    study = secret_study(researcher, count=6)
    add_items(study, StudyItem.Kind.PRACTICE, 1, source_start=7000)
    add_items(study, StudyItem.Kind.ATTENTION, 1, source_start=7500)
    return study


def walk_open_link(audit: Audit, client: Client) -> list[str]:
    """One participant from the link to the end; returns the image URLs they were shown."""
    study, base = audit.study, f"/s/{audit.study.join_token}"
    audit.page("join (redirect)", client.get(f"{base}/"), 302)
    audit.page("consent", client.get(f"{base}/consent/"))
    audit.page(
        "consent agreed (redirect)", client.post(f"{base}/consent/", {"choice": "agree"}), 302
    )
    audit.page("instructions", client.get(f"{base}/instructions/"))
    audit.page("instructions read (redirect)", client.post(f"{base}/instructions/"), 302)
    audit.page("label page", client.get(f"{base}/label/"))
    trial = audit.api("api next", client.get(f"{base}/api/next"))
    images = []
    while not trial.get("done"):
        images.append(trial["image"])
        stored = stored_bytes(trial["assignment"])
        audit.image(f"image {len(images)}", client.get(trial["image"]), stored)
        assert trial["image_data"] == "data:image/png;base64," + base64.b64encode(stored).decode()
        if trial["next_image"]:
            following = client.get(trial["next_image"])
            assert following.status_code == 200
        reply = audit.api(
            f"api labels {len(images)}", api_answer(client, study, answer_body(trial, 5))
        )
        trial = reply["next"]
    audit.page("done", client.get(trial["redirect"]))
    return images


def test_nothing_an_annotator_can_reach_reveals_the_examples(study: Study, settings) -> None:
    settings.DEBUG = False  # the error pages participants get, not the debugging ones
    audit = audit_for(study)
    client = Client()
    base = f"/s/{study.join_token}"

    images = walk_open_link(audit, client)

    assert len(images) == 4  # practice, two main items, one attention check
    outsider = Client()
    audit.page("image, no session", outsider.get(images[-1]), 403)
    audit.page("image, after it was answered", client.get(images[-1]), 403)
    audit.page("api next, no session", outsider.get(f"{base}/api/next"), 403)
    audit.page("unknown study", outsider.get("/s/no-such-token/"), 404)
    audit.page("declined, open link", outsider.post(f"{base}/consent/", {"choice": "decline"}))
    audit.page("done again (resumes)", client.get(f"{base}/label/"), 302)
    _errors_while_labelling(audit)
    _other_recruitments(audit)
    print(f"\nleakage audit: {len(audit.checked)} responses checked")
    assert len(audit.checked) >= 40
    assert audit.inline_images >= 8  # each trial's image and the next one's, inline


def _errors_while_labelling(audit: Audit) -> None:
    study, base = audit.study, f"/s/{audit.study.join_token}"
    client = Client()
    audit.page("consent 2", client.post(f"{base}/consent/", {"choice": "agree"}), 302)
    audit.api("api next, wrong step", client.get(f"{base}/api/next"), 409)
    client.post(f"{base}/instructions/")
    trial = audit.api("api next 2", client.get(f"{base}/api/next"))
    audit.api("api bad value", api_answer(client, study, answer_body(trial, 77)), 400)
    audit.api(
        "api timeout, untimed",
        api_answer(client, study, answer_body(trial, None, timed_out=True)),
        400,
    )
    other = Participant.objects.exclude(assignments__public_id=trial["assignment"]).first()
    theirs = Assignment.objects.filter(participant=other).first()
    body = answer_body({"assignment": str(theirs.public_id)}, 1)
    audit.api("api another's item", api_answer(client, study, body), 403)
    audit.page(
        "another's image", client.get(f"/s/{study.join_token}/image/{theirs.public_id}/"), 403
    )
    plain = client.post(f"{base}/label/", {"assignment": trial["assignment"], "value": "x"})
    audit.page("plain form, bad answer", plain, 400)
    configure(study, status=Study.Status.PAUSED)
    audit.page("paused, newcomer", Client().get(f"{base}/"), 403)
    configure(study, status=Study.Status.LIVE)


def _other_recruitments(audit: Audit) -> None:
    study, base = audit.study, f"/s/{audit.study.join_token}"
    configure(study, recruitment="prolific")
    audit.page("prolific, no id", Client().get(f"{base}/"), 400)
    prolific = Client()
    query = urlencode(
        {"PROLIFIC_PID": "60ffe5c8371090c7041d43f8", "STUDY_ID": "s", "SESSION_ID": "x"}
    )
    audit.page("prolific entry", prolific.get(f"{base}/?{query}"), 302)
    audit.page("prolific declines", prolific.post(f"{base}/consent/", {"choice": "decline"}), 302)
    audit.page("prolific screen-out", prolific.get(f"{base}/declined/"), 302)

    configure(study, recruitment="mturk")
    preview = Client().get(f"{base}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE&hitId=H")
    audit.page("mturk preview", preview)
    example = Client().get(f"{base}/example.png")
    practice = StudyItem.objects.get(study=study, kind="practice").example.image.read()
    audit.image("mturk example image", example, practice)
    worker = Client()
    query = urlencode(
        {
            "assignmentId": "A1",
            "hitId": "H1",
            "workerId": "W1",
            "turkSubmitTo": "https://workersandbox.mturk.com",
        }
    )
    audit.page("mturk entry", worker.get(f"{base}/?{query}"), 302)
    participant = Participant.objects.get(source="mturk")
    Participant.objects.filter(pk=participant.pk).update(
        consented_at=participant.created_at,
        instructions_read_at=participant.created_at,
        completed_at=participant.created_at,
    )
    submit = audit.page("mturk submit form", worker.get(f"{base}/done/"))
    assert 'action="https://workersandbox.mturk.com/mturk/externalSubmit"' in submit
    again = urlencode(
        {
            "assignmentId": "A2",
            "hitId": "H1",
            "workerId": "W1",
            "turkSubmitTo": "https://workersandbox.mturk.com",
        }
    )
    audit.page("mturk already done", Client().get(f"{base}/?{again}"), 403)
    bad = urlencode(
        {
            "assignmentId": "A3",
            "hitId": "H1",
            "workerId": "W3",
            "turkSubmitTo": "https://evil.example",
        }
    )
    audit.page("mturk bad turkSubmitTo", Client().get(f"{base}/?{bad}"), 400)

    configure(study, recruitment="lab")
    LabCode.objects.create(study=study, code="ABCD2345")
    lab = Client()
    audit.page("lab code form", lab.get(f"{base}/"))
    audit.page("lab code wrong", lab.post(f"{base}/", {"code": "WRONG"}), 400)
    audit.page("lab code accepted", lab.post(f"{base}/", {"code": "ABCD2345"}), 302)
    configure(study, recruitment="open")


def test_two_participants_pages_for_different_items_are_identical(study: Study) -> None:
    """What differs between items never reaches the page: only the random ids differ."""
    configure(study, attention_checks_per_participant=0)
    StudyItem.objects.filter(study=study, kind__in=["practice", "attention"]).delete()
    pages: list[str] = []
    trials: list[dict] = []
    items: list[Example] = []
    # Which items participants draw is seeded per participant: join until one holds an
    # item whose labels differ from the first one's.
    for _ in range(8):
        client = Client()
        client.post(f"/s/{study.join_token}/consent/", {"choice": "agree"})
        client.post(f"/s/{study.join_token}/instructions/")
        page = blank_ids(client.get(f"/s/{study.join_token}/label/").content.decode(), study)
        trial = client.get(f"/s/{study.join_token}/api/next").json()
        example = Assignment.objects.get(public_id=trial["assignment"]).item.example
        if items and (example.source_label, example.target_label) == (
            items[0].source_label,
            items[0].target_label,
        ):
            continue
        pages.append(page)
        trials.append(json.loads(blank_ids(json.dumps(trial), study)))
        items.append(example)
        if len(items) == 2:
            break

    first, second = items
    assert (first.source_label, first.target_label) != (second.source_label, second.target_label)
    assert pages[0] == pages[1]
    assert trials[0] == trials[1]


def test_every_stored_png_of_the_study_is_bare(study: Study) -> None:
    for item in StudyItem.objects.filter(study=study).select_related("example"):
        with item.example.image.open("rb") as handle:
            assert png_chunk_types(handle.read()) <= BARE_PNG_CHUNKS, item.kind
