"""The researcher's preview of the annotator's screens, with a sample of the study's items.

It writes nothing: no participant, no assignment, no label. The labelling screen
runs the real page script against a stand-in for the API that lives in the page.
Images come from the researcher's own (login-protected) example URLs.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from config.auth import researcher_required
from labeling import payloads
from labeling.queries import answer_choices, choice_text, preview_sample
from study.models import Study, StudyItem
from study.queries import study_for

SCREENS = ("consent", "instructions", "label", "done")


@researcher_required
@never_cache
@require_GET
def study_preview(request: HttpRequest, study_id: int) -> HttpResponse:
    study = study_for(request.user, study_id)
    screen = request.GET.get("screen", SCREENS[0])
    if screen not in SCREENS:
        screen = SCREENS[0]
    practice, trials = preview_sample(study)
    base = reverse("study-preview", args=[study.pk])
    context = {
        "study": study,
        "choices": answer_choices(study),
        "preview": True,
        "preview_base": base,
        "preview_screens": SCREENS,
        "screen": screen,
        "practice_count": len(practice),
        "example": bool(practice),
    }
    if screen == "label":
        context.update(_label_context(study, practice, trials, f"{base}?screen=done"))
    return render(request, f"labeling/{screen}.html", context)


def _label_context(
    study: Study, practice: list[StudyItem], trials: list[StudyItem], done_url: str
) -> dict[str, object]:
    timed = study.presentation == Study.Presentation.TIMED
    items = [_preview_item(study, item, "practice") for item in practice]
    items += [_preview_item(study, item, "main") for item in trials]
    state = (
        {
            "assignment": "preview-0",
            "image": items[0]["image"],
            "progress": {"done": 0, "total": len(practice) or len(trials)},
            "phase": items[0]["phase"],
            # A timed study preloads nothing: each image comes when its trial starts.
            "next_image": items[1]["image"] if len(items) > 1 and not timed else None,
        }
        if items
        else payloads.done_payload(study) | {"redirect": done_url}
    )
    config = payloads.page_config(study, state, mode="preview", items=items, done_url=done_url)
    return {"state": state, "config": config}


def _preview_item(study: Study, item: StudyItem, phase: str) -> dict[str, object]:
    answer = item.expected_label if phase == "practice" else None
    return {
        "image": reverse("study-example-image", args=[study.pk, item.example_id]),
        "phase": phase,
        "answer": answer,
        "answer_text": choice_text(study, answer),
    }
