"""axe-core on every annotator page and the main researcher pages, in Chromium.

Any violation of impact "moderate", "serious" or "critical" fails the test (the issue asks
for no serious or critical one, and the moderate ones fixed); each page's counts by impact
are written to test-artifacts/axe/ for the record.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from axe_playwright_python.sync_playwright import Axe
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Page, expect

from attacks.models import ClassifierModel, DatasetImportJob, GenerationJob, JobStatus
from study.models import LabCode, Study, StudyItem
from tests.browser.conftest import ARTIFACTS, screenshot
from tests.browser.test_annotator_flow import (
    agree_and_start_by_keyboard,
    press_digit_when_ready,
    wait_until_answerable,
)
from tests.fixtures import PASSWORD
from tests.labeling.conftest import add_items, configure

pytestmark = pytest.mark.django_db(transaction=True)

AXE = Axe()
# The innermost elements that reach past the window's right edge, to say what overflows.
WIDEST = """() => Array.from(document.querySelectorAll('main *'))
  .filter(e => e.getBoundingClientRect().right > window.innerWidth + 1
    && !Array.from(e.children).some(c => c.getBoundingClientRect().right > window.innerWidth + 1))
  .slice(0, 3)
  .map(e => e.tagName + (e.id ? '#' + e.id : '') + ' ' + (e.textContent || '').slice(0, 40))"""
BLOCKING = ("moderate", "serious", "critical")
REPORTS = ARTIFACTS.parent / "axe"


def assert_accessible(page: Page, name: str) -> None:
    """Run axe on the page as it stands; record the counts; fail on serious or critical."""
    page.wait_for_load_state("load")
    violations = AXE.run(page).response["violations"]
    counts = Counter(violation["impact"] for violation in violations)
    REPORTS.mkdir(parents=True, exist_ok=True)
    summary = {
        "url": page.url,
        "counts": dict(counts),
        "violations": [
            {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]]}
            for v in violations
        ],
    }
    Path(REPORTS / f"{name}.json").write_text(json.dumps(summary, indent=1))
    blocking = [v for v in summary["violations"] if v["impact"] in BLOCKING]
    assert not blocking, f"{name}: {json.dumps(blocking, indent=1)}"


def sign_in(page: Page, base: str) -> None:
    page.goto(f"{base}{reverse('login')}")
    assert_accessible(page, "researcher-sign-in")
    page.get_by_label("Username").fill("researcher")
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.wait_for_url(f"{base}/researcher/**")


ANSWERABLE_OR_GONE = """() => {
  if (!location.pathname.endsWith('/label/')) return true;
  const i = document.getElementById('stimulus');
  const a = document.querySelector('#label-form .answers');
  return !!i && !!a && i.complete && i.naturalWidth > 0 && !i.classList.contains('pending')
    && !a.hasAttribute('aria-busy')
    && document.getElementById('progress-text').textContent !== arguments[0];
}"""


def label_until_done(page: Page) -> None:
    """Answer every trial left in the participant's list with the digit 1."""
    shown = ""
    while True:
        page.wait_for_function(ANSWERABLE_OR_GONE.replace("arguments[0]", json.dumps(shown)))
        if "/label/" not in page.url:
            return
        shown = page.locator("#progress-text").inner_text()
        page.wait_for_timeout(120)
        page.keyboard.press("1")


def test_every_annotator_page_passes_axe(live_server, page: Page, make_study) -> None:
    study = configure(
        make_study(count=3, labels_per_item=2, items_per_participant=3),
        consent_text="You agree to label a few images of digits.",
    )
    add_items(study, StudyItem.Kind.PRACTICE, 1, name="a11y-practice")
    add_items(study, StudyItem.Kind.ATTENTION, 1, source_start=8600, name="a11y-attention")
    base = live_server.url

    page.goto(f"{base}/s/{study.join_token}/")
    expect(page.get_by_role("heading", name="Before you start")).to_be_visible()
    assert_accessible(page, "annotator-consent")
    page.keyboard.press("Enter")
    expect(page.get_by_role("heading", name="Instructions")).to_be_visible()
    assert_accessible(page, "annotator-instructions")
    page.keyboard.press("Enter")
    page.wait_for_url("**/label/")
    press_digit_when_ready(page, "9")
    expect(page.locator("#feedback-text")).to_be_visible()
    assert_accessible(page, "annotator-practice-feedback")
    page.keyboard.press("Enter")
    wait_until_answerable(page)
    assert_accessible(page, "annotator-trial")
    label_until_done(page)
    page.wait_for_url("**/done/")
    assert_accessible(page, "annotator-done")

    page.goto(f"{base}/s/{study.join_token}/withdraw/")
    assert_accessible(page, "annotator-withdraw")

    page.goto(f"{base}/s/no-such-study-link-here/")
    assert_accessible(page, "annotator-link-error")


def test_the_annotator_pages_around_the_trials_pass_axe(
    live_server, page: Page, make_study
) -> None:
    base = live_server.url
    declining = configure(
        make_study(count=2, items_per_participant=2), consent_text="Consent, please."
    )
    page.goto(f"{base}/s/{declining.join_token}/")
    page.get_by_role("button", name="I do not agree").click()
    assert_accessible(page, "annotator-declined")

    lab = configure(make_study(count=3, items_per_participant=2), recruitment=Study.Recruitment.LAB)
    LabCode.objects.create(study=lab, code="cz6sgepk")
    page.goto(f"{base}/s/{lab.join_token}/")
    assert_accessible(page, "annotator-lab-code")

    mturk = configure(
        make_study(count=4, items_per_participant=2), recruitment=Study.Recruitment.MTURK
    )
    page.goto(f"{base}/s/{mturk.join_token}/?assignmentId=ASSIGNMENT_ID_NOT_AVAILABLE")
    expect(page.get_by_text("accept the HIT")).to_be_visible()
    assert_accessible(page, "annotator-mturk-preview")

    closed = configure(make_study(count=5, items_per_participant=2), status=Study.Status.CLOSED)
    page.goto(f"{base}/s/{closed.join_token}/")
    assert_accessible(page, "annotator-closed")


def test_the_main_researcher_pages_pass_axe_and_fit_a_phone(
    live_server, page: Page, make_study, trained_model: ClassifierModel, researcher: User
) -> None:
    study = make_study(count=3, labels_per_item=1, items_per_participant=3)
    base = live_server.url
    page.goto(f"{base}/s/{study.join_token}/")
    agree_and_start_by_keyboard(page)
    label_until_done(page)
    page.wait_for_url("**/done/")

    sign_in(page, base)
    first_item = study.items.select_related("example__setting").first()
    assert first_item is not None
    setting = first_item.example.setting
    job = GenerationJob.objects.filter(setting=setting).first()
    assert job is not None
    participant = study.participants.first()
    assert participant is not None
    # A failed import, the job page's fullest state: its sentence and the link to try again.
    dataset_import = DatasetImportJob.objects.create(
        name="fruit",
        split="test",
        archive_name="fruit.zip",
        status=JobStatus.FAILED,
        total=24,
        error="images differ in size: apple/000.png is 32x32 but banana/005.png is 28x28",
        created_by=researcher,
        started_at=timezone.now(),
        finished_at=timezone.now(),
        worker_host="worker-1",
    )
    pages = {
        "researcher-home": reverse("researcher-home"),
        "researcher-study": reverse("study-detail", args=[study.pk]),
        "researcher-analysis": reverse("study-analysis", args=[study.pk]),
        "researcher-dashboard": reverse("study-dashboard", args=[study.pk]),
        "researcher-gallery": reverse("study-gallery", args=[study.pk]),
        "researcher-participant": reverse("participant", args=[study.pk, participant.pk]),
        "researcher-new-study": reverse("study-create"),
        "researcher-new-setting": reverse("setting-create"),
        "researcher-train-model": reverse("model-create"),
        "researcher-register-model": reverse("model-register"),
        "researcher-import": reverse("examples-import"),
        "researcher-setting": reverse("setting-detail", args=[setting.pk]),
        "researcher-model": reverse("model-detail", args=[trained_model.pk]),
        "researcher-job": reverse("job-detail", args=[job.pk]),
        "researcher-paper-table": reverse("study-paper-table", args=[study.pk]),
        "researcher-studies": reverse("study-list"),
        "researcher-models": reverse("model-list"),
        "researcher-settings": reverse("setting-list"),
        "researcher-jobs": reverse("job-list"),
        "researcher-datasets": reverse("dataset-list"),
        "researcher-import-dataset": reverse("dataset-import"),
        "researcher-dataset-import-job": reverse("dataset-import-job", args=[dataset_import.pk]),
    }
    too_wide = []
    for name, path in pages.items():
        response = page.goto(f"{base}{path}")
        assert response is not None
        assert response.ok, f"{name}: {path} answered {response.status}"
        assert_accessible(page, name)
        for width in (1000, 390):  # a wide table scrolls in its own box, not the page
            page.set_viewport_size({"width": width, "height": 900})
            if page.evaluate("document.documentElement.scrollWidth > window.innerWidth"):
                too_wide.append(f"{name} at {width} px: {page.evaluate(WIDEST)}")
        page.set_viewport_size({"width": 1000, "height": 900})
    assert too_wide == []
    screenshot(page, "researcher-job")
