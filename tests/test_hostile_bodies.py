"""Every endpoint that takes a body answers hostile ones with a 4xx, never a 500, and
changes nothing.

The URL patterns are enumerated from the resolver (as in test_researcher_urls_are_closed),
their converters filled with real rows the signed-in researcher owns (the annotator's
pages with a live study's token and a participant's session), and each is sent, by POST,
PUT and PATCH, as JSON and as form data: JSON nested 100,000 deep, a list, null, a string
or a number where an object belongs, 10 MB, invalid UTF-8. Where a valid body is known
(the designer, "New attack setting", the REST API's writes, an annotator's answer), each
of its numbers in turn is also replaced by a number beyond what the database stores
(2**63, 10**100, -10**30), a word, a list, an object or JSON nested 100,000 deep. A
method an endpoint does not take is a 405, and then it gets no more bodies. Every row of
the apps' tables is compared before and after each URL.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

import pytest
from django.apps import apps
from django.contrib.auth.models import User
from django.test import Client
from django.urls import get_resolver

from attacks.models import AttackSetting, GenerationJob
from labeling.models import Participant
from study import services
from study.design import StudyDesign
from study.models import Study
from tests.api.test_endpoints import _design as design_json
from tests.labeling.conftest import answer_body, api_next, start_open
from tests.study.conftest import full_design, make_setting, settings_of_a_study
from tests.study.test_views import designer_form
from tests.test_researcher_urls_are_closed import _routes

__all__ = ["full_design", "make_setting", "settings_of_a_study"]

DEPTH = 100_000
DEEP = "[" * DEPTH + "]" * DEPTH
TEN_MB = 10 * 1024 * 1024
JSON_TYPE = "application/json"
FORM_TYPE = "application/x-www-form-urlencoded"
METHODS = ("post", "put", "patch")
# Signing out is what these do with any body; the client would then be anonymous.
LEFT_OUT = {"accounts/logout/", "admin/logout/"}
# Whole bodies, as the bytes sent: the same bytes go as JSON and as form data.
HOSTILE_BODIES: dict[str, bytes] = {
    "invalid UTF-8": b'{"title": "\xff\xfe\xc3\x28", "seed": 1}',
    "array nested 100,000 deep": DEEP.encode(),
    "object nested 100,000 deep": ('{"a":' * DEPTH + "0" + "}" * DEPTH).encode(),
    "a list instead of an object": b"[1, 2, 3]",
    "null": b"null",
    "a string": b'"a string"',
    "2**63": str(2**63).encode(),
    "10 MB": b'{"title": "' + b"x" * TEN_MB + b'"}',
}
# In place of one number of a valid body.
HOSTILE_NUMBERS: dict[str, object] = {
    "2**63": 2**63,
    "10**100": 10**100,
    "-10**30": -(10**30),
    "a word": "twelve",
    "a list": [1],
    "an object": {"a": 1},
    "nested 100,000 deep": DEEP,
}
_CONVERTER = re.compile(r"<(?:(\w+):)?(\w+)>")
Path = tuple[str | int, ...]


@dataclass(frozen=True)
class ValidBody:
    """A body the endpoint accepts, and where its numbers are."""

    data: dict[str, Any]
    numbers: tuple[Path, ...]
    encoding: str  # "json" or "form"


@dataclass
class Tally:
    requests: int = 0
    by_class: Counter[str] = field(default_factory=Counter)
    urls: set[str] = field(default_factory=set)
    not_refused: Counter[str] = field(default_factory=Counter)  # "METHOD url status": count
    failures: list[str] = field(default_factory=list)

    def record(self, what: str, status: int, *, must_refuse: bool) -> None:
        self.requests += 1
        self.by_class[f"{status // 100}xx" if status != 405 else "405"] += 1
        if status < 400:
            self.not_refused[f"{' '.join(what.split()[:2])} {status}"] += 1
        if status >= 500 or (must_refuse and not 400 <= status < 500):
            self.failures.append(f"{what}: {status}")


@dataclass(frozen=True)
class World:
    """The rows the URLs are filled with, and the clients that send the bodies."""

    researcher: Client
    annotator: Client
    draft: Study
    live: Study
    closed: Study
    setting: AttackSetting
    job: GenerationJob
    participant: Participant
    outsider: User
    trial: dict[str, Any]
    designer: dict[str, Any]
    design_json: dict[str, Any]

    def study_for(self, route: str) -> Study:
        """A draft takes designs; status moves are refused to a closed study; a live one
        has participants."""
        if "participants/" in route:
            return self.live
        if route.endswith(("open/", "pause/", "close/", "status/")):
            return self.closed
        return self.draft

    def url(self, route: str) -> str:
        study = self.study_for(route)
        values = {
            "pk": str(study.pk),
            "study_id": str(study.pk),
            "setting_id": str(self.setting.pk),
            "job_id": str(self.job.pk),
            "participant_id": str(self.participant.pk),
            "user_id": str(self.outsider.pk),  # shares nothing: removing them is a no-op
            "join_token": self.live.join_token,
            "assignment_id": self.trial["assignment"],
            "file_name": "payments.csv",
        }
        if route.startswith("api/v1/jobs/"):
            values["pk"] = str(self.job.pk)
        if route.startswith("api/v1/attack-settings/"):
            values["pk"] = str(self.setting.pk)
        return "/" + _CONVERTER.sub(lambda match: values.get(match.group(2), "1"), route)

    def client_for(self, route: str) -> Client:
        return self.annotator if route.startswith("s/<str:join_token>/") else self.researcher

    def valid_bodies(self) -> dict[tuple[str, str], ValidBody]:
        """(route, method) -> a body it accepts, whose numbers are replaced in turn."""
        design = (*_numbers(self.design_json), ("samples", 0, "count"), ("samples", 0, "setting"))
        designer = ValidBody(self.designer, _numbers(self.designer), "form")
        answer = {**answer_body(self.trial, 1), "exposure_ms": 200.0}
        setting = {
            "name": "hostile",
            "attack_name": "clean",
            "config": {},
            "dataset": "mnist",
            "source_split": "test",
            "source_start": 0,
            "source_stop": 100,
            "seed": 1,
        }
        model = {
            "name": "hostile",
            "architecture": "small_cnn",
            "dataset": "mnist",
            "training_split": "test",
            "training_start": 0,
            "training_stop": 100,
            "evaluation_split": "test",
            "evaluation_start": 100,
            "evaluation_stop": 200,
            "recipe": "standard",
            "eps": 0.3,
            "epochs": 1,
            "batch_size": 32,
            "learning_rate": 0.001,
            "seed": 1,
        }
        job = {"setting": self.setting.pk, "count": 4, "chunk_size": 64}
        return {
            ("api/v1/studies/", "post"): ValidBody(self.design_json, design, "json"),
            ("api/v1/studies/<int:pk>/", "put"): ValidBody(self.design_json, design, "json"),
            ("api/v1/attack-settings/", "post"): ValidBody(
                setting, (*_numbers(setting), ("config",)), "json"
            ),
            ("api/v1/jobs/", "post"): ValidBody(job, _numbers(job), "json"),
            ("researcher/studies/new/", "post"): designer,
            ("researcher/studies/<int:study_id>/edit/", "post"): designer,
            ("researcher/studies/<int:study_id>/lab-codes/", "post"): ValidBody(
                {"count": 5}, (("count",),), "form"
            ),
            ("researcher/settings/new/", "post"): ValidBody(
                {**setting, "name": "hostile page", "config": "{}"}, _numbers(setting), "form"
            ),
            ("researcher/models/new/", "post"): ValidBody(model, _numbers(model), "form"),
            ("researcher/settings/<int:setting_id>/jobs/", "post"): ValidBody(
                {"count": 4, "chunk_size": 64}, (("count",), ("chunk_size",)), "form"
            ),
            ("s/<str:join_token>/api/labels", "post"): ValidBody(
                answer, (("value",), ("client_response_ms",), ("exposure_ms",)), "json"
            ),
            ("s/<str:join_token>/label/", "post"): ValidBody(
                answer, (("value",), ("client_response_ms",)), "form"
            ),
        }


def _numbers(body: dict[str, Any]) -> tuple[Path, ...]:
    """The paths of a body's top-level whole numbers."""
    return tuple(
        (key,)
        for key, value in body.items()
        if isinstance(value, int | float) and not isinstance(value, bool)
    )


def _replaced(data: Any, path: Path, value: object) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(data, list):
        return [_replaced(item, rest, value) if i == head else item for i, item in enumerate(data)]
    return {**data, head: _replaced(data[head], rest, value)}


_DEEP_MARK = "__nested_100000_deep__"


def _as_json(data: Any) -> bytes:
    """JSON text; the deep marker becomes real nesting, which json.dumps would not write."""
    return json.dumps(data).replace(f'"{_DEEP_MARK}"', DEEP).encode()


def _as_form(data: dict[str, Any]) -> bytes:
    """A urlencoded form: the body's lists as repeated fields, other values as text."""

    def text(value: Any) -> str:
        if value == _DEEP_MARK:
            return DEEP
        return value if isinstance(value, str) else json.dumps(value)

    fields = [
        (key, text(item))
        for key, value in data.items()
        for item in (value if isinstance(value, list) else [value])
    ]
    return urlencode(fields).encode()


def _mutations(body: ValidBody) -> Iterator[tuple[str, bytes, str]]:
    """(what, bytes, content type) for each number of the body, replaced by each hostile one."""
    for path in body.numbers:
        for name, number in HOSTILE_NUMBERS.items():
            value = _DEEP_MARK if number is DEEP else number
            if body.encoding == "form" and isinstance(value, list | dict):
                value = json.dumps(value)  # as text: a list would be repeated fields
            data = _replaced(body.data, path, value)
            where = ".".join(map(str, path))
            if body.encoding == "json":
                yield f"{where}={name} as JSON", _as_json(data), JSON_TYPE
            else:
                yield f"{where}={name} as form data", _as_form(data), FORM_TYPE


def snapshot() -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the apps' tables, and the accounts and tokens."""
    models = [
        *(
            model
            for label in ("attacks", "study", "labeling")
            for model in apps.get_app_config(label).get_models()
        ),
        apps.get_model("auth", "User"),
        apps.get_model("authtoken", "Token"),
    ]
    return {
        model._meta.label: list(model._default_manager.order_by("pk").values_list())
        for model in models
    }


def counts(rows: dict[str, list[tuple[Any, ...]]]) -> dict[str, int]:
    return {label: len(table) for label, table in rows.items()}


@pytest.fixture
def world(
    researcher: User,
    outsider: User,
    settings_of_a_study,
    full_design: StudyDesign,
    make_study: Callable[..., Study],
) -> World:
    draft = services.create_draft_study(owner=researcher, design=full_design)
    closed = services.create_draft_study(owner=researcher, design=full_design)
    services.change_status(closed, Study.Status.LIVE, by=researcher)
    services.change_status(closed, Study.Status.CLOSED, by=researcher)
    live = make_study()
    # A view's exception is answered as production answers it, a 500, and counted.
    annotator = Client(raise_request_exception=False)
    start_open(annotator, live)
    trial = api_next(annotator, live)
    researcher_client = Client(raise_request_exception=False)
    researcher_client.force_login(researcher)
    # The live study's setting: a clean one with room for more examples.
    clean = AttackSetting.objects.filter(examples__study_items__study=live).distinct().get()
    AttackSetting.objects.filter(pk=clean.pk).update(created_by=researcher)  # theirs to write to
    return World(
        researcher=researcher_client,
        annotator=annotator,
        draft=draft,
        live=live,
        closed=closed,
        setting=clean,
        job=GenerationJob.objects.filter(setting=clean).get(),
        participant=live.participants.get(),
        outsider=outsider,
        trial=trial,
        designer=designer_form(settings_of_a_study, recruitment="lab"),
        design_json=design_json(settings_of_a_study),
    )


def _send(client: Client, method: str, url: str, body: bytes, content_type: str) -> int:
    send = getattr(client, method)
    return send(url, data=body, content_type=content_type).status_code


def test_hostile_bodies_get_a_4xx_and_change_nothing(world: World) -> None:
    routes = sorted(set(_routes(get_resolver().url_patterns)) - LEFT_OUT)
    valid = world.valid_bodies()
    assert set(valid) <= {(route, method) for route in routes for method in METHODS}
    tally = Tally()
    before = snapshot()
    for route in routes:
        url, client = world.url(route), world.client_for(route)
        for method in METHODS:
            sent = _send_all(tally, client, method, url, valid.get((route, method)))
            if sent:
                tally.urls.add(f"{method.upper()} {url}")
        after = snapshot()
        changed = [label for label in before if before[label] != after[label]]
        if changed:
            tally.failures.append(f"{route}: rows changed in {', '.join(changed)}")
            before = after
    print(
        f"\nhostile bodies: {tally.requests} requests to {len(tally.urls)} (method, URL) pairs "
        f"that did not answer 405, of {len(routes)} URL patterns; "
        f"statuses: {dict(sorted(tally.by_class.items()))}; rows: {counts(before)}"
    )
    print("answered other than 4xx (bodies that these endpoints never read):")
    for what, times in sorted(tally.not_refused.items()):
        print(f"  {what} x{times}")
    assert tally.failures == [], "\n".join(tally.failures)
    # The valid bodies are accepted: their numbers were what the hostile ones refused.
    for (route, method), body in valid.items():
        data = _as_json(body.data) if body.encoding == "json" else _as_form(body.data)
        content_type = JSON_TYPE if body.encoding == "json" else FORM_TYPE
        send = getattr(world.client_for(route), method)
        response = send(world.url(route), data=data, content_type=content_type)
        assert response.status_code < 400, (route, method, response.content[:2000])


def _send_all(tally: Tally, client: Client, method: str, url: str, body: ValidBody | None) -> bool:
    """Every hostile body to ``url`` by ``method``; False if the method is not taken there."""
    for name, payload in HOSTILE_BODIES.items():
        for content_type in (JSON_TYPE, FORM_TYPE):
            status = _send(client, method, url, payload, content_type)
            if status == 405:
                tally.record(f"{method} {url}", status, must_refuse=False)
                return False
            tally.record(f"{method} {url} {name} as {content_type}", status, must_refuse=False)
    for what, payload, content_type in _mutations(body) if body else ():
        status = _send(client, method, url, payload, content_type)
        tally.record(f"{method} {url} {what}", status, must_refuse=True)
    return True
