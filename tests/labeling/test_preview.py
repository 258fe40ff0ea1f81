"""The researcher's preview of the annotator's screens: owner only, and it writes nothing."""

from __future__ import annotations

import json
import re

from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from labeling.models import Assignment, Label, Participant
from study.models import StudyItem
from tests.labeling.conftest import add_items, configure


def test_the_owner_previews_every_screen_of_a_draft_and_nothing_is_written(
    make_study, researcher_client: Client
) -> None:
    study = configure(make_study(count=4), status="draft", consent_text="Please agree.")
    practice = add_items(study, StudyItem.Kind.PRACTICE, 2)
    url = reverse("study-preview", args=[study.pk])

    pages = {
        screen: researcher_client.get(f"{url}?screen={screen}")
        for screen in ("consent", "instructions", "label", "done")
    }

    assert url == f"/s/preview/{study.pk}/"
    assert all(page.status_code == 200 for page in pages.values())
    assert "Please agree." in pages["consent"].content.decode()
    assert study.instructions in pages["instructions"].content.decode()
    label = pages["label"].content.decode()
    config = json.loads(
        re.search(
            r'<script id="annotator-config" type="application/json">(.*?)</script>', label
        ).group(1)
    )
    assert config["mode"] == "preview"
    assert [item["phase"] for item in config["items"]][:2] == ["practice", "practice"]
    assert config["items"][0]["image"] == (
        f"/researcher/studies/{study.pk}/examples/{practice[0].example_id}.png"
    )
    assert config["items"][0]["answer"] == practice[0].expected_label
    assert len(config["items"]) == 2 + 4
    assert researcher_client.get(config["items"][-1]["image"]).status_code == 200
    assert (Participant.objects.count(), Assignment.objects.count(), Label.objects.count()) == (
        0,
        0,
        0,
    )


def test_only_the_owner_may_preview(make_study, outsider: User) -> None:
    study = make_study()
    url = reverse("study-preview", args=[study.pk])
    other = Client()
    other.force_login(outsider)
    annotator = Client()
    annotator.force_login(User.objects.create_user("annotator", password="x-long-password"))

    assert other.get(url).status_code == 404
    assert annotator.get(url).status_code == 403
    assert Client().get(url)["Location"].startswith("/accounts/login/")
