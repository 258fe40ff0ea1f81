"""The demo as `./run demo` serves it, in Chromium: an annotator's whole study, and a job's
live progress through the demo's own Celery worker on its filesystem broker.

The demo runs in a subprocess on a fresh SQLite file (its own database, as `./run demo`
makes), set up small (6 examples, 1 epoch) and served with its worker; both tests use
it, read its database with sqlite3, and the module ends by stopping it as Ctrl-C does.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import requests
from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from tests.browser.conftest import screenshot
from tests.http_flow import free_port

REPOSITORY = Path(__file__).resolve().parents[2]
SETUP_TIMEOUT_S = 1200  # training on a loaded 2-core machine; about 45 s on an idle one
# The module's setup counts against its first test.
pytestmark = pytest.mark.timeout(SETUP_TIMEOUT_S + 300)


@dataclass(frozen=True)
class ServedDemo:
    base: str
    join_path: str
    password: str
    database: Path

    def query(self, sql: str, *parameters: Any) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.database) as db:
            return db.execute(sql, parameters).fetchall()


def _children(pid: int) -> set[int]:
    """The live processes whose parent is ``pid`` (Linux /proc)."""
    found = set()
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(
                line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line
            )
        except OSError:
            continue
        if fields.get("PPid", "").strip() == str(pid) and fields.get("State", "")[:1] != "Z":
            found.add(int(status.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][:1]
    except (OSError, IndexError):
        return False
    return state != "Z"  # a zombie has exited; only its parent's wait is missing


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedDemo]:
    folder = tmp_path_factory.mktemp("demo")
    database = folder / "db.sqlite3"
    environment = {
        key: value
        for key, value in os.environ.items()
        if key not in {"CELERY_BROKER_URL", "DJANGO_SETTINGS_MODULE", "ADVSTUDY_DATA_DIR"}
    }
    environment.update(
        DATABASE_URL=f"sqlite:///{database}", DEBUG="1", MEDIA_ROOT=str(folder / "media")
    )
    port = free_port()
    command = [sys.executable, "manage.py", "demo", "--examples", "6", "--epochs", "1"]
    errors = folder / "stderr.txt"
    with errors.open("w") as stderr:
        process = subprocess.Popen(
            [*command, "--addr", f"127.0.0.1:{port}"],
            cwd=REPOSITORY,
            env=environment,
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        output = _read_until(process, "Serving on", time.monotonic() + SETUP_TIMEOUT_S, errors)
        base = f"http://127.0.0.1:{port}"
        join = re.search(r"Annotators join at:  http://[^/]+(/s/\S+)", output)
        password = re.search(r"password '([^']+)'", output)
        assert join, output[-3000:]
        assert password, output[-3000:]
        _wait_until_served(base, process)
        children = _children(process.pid)
        yield ServedDemo(base, join.group(1), password.group(1), database)
    finally:
        process.send_signal(signal.SIGINT)  # as Ctrl-C in its terminal
        process.wait(timeout=60)
    # The web server and the worker stopped with it.
    assert len(children) == 2, children
    assert not [pid for pid in children if _alive(pid)]


def _read_until(process: subprocess.Popen[str], marker: str, deadline: float, errors: Path) -> str:
    assert process.stdout is not None
    lines = []
    for line in process.stdout:
        lines.append(line)
        if marker in line:
            return "".join(lines)
        if time.monotonic() > deadline:
            break
    process.kill()
    pytest.fail(
        f"the demo did not start serving:\n{''.join(lines)[-2000:]}\n"
        f"{errors.read_text(errors='replace')[-3000:]}"
    )


def _wait_until_served(base: str, process: subprocess.Popen[str]) -> None:
    for _ in range(150):
        assert process.poll() is None, "the demo exited"
        try:
            requests.get(f"{base}/healthz", timeout=60)  # gunicorn's worker may still boot
            return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.2)
    pytest.fail("the demo's web server did not answer")


def _wait_until_answerable(page: Page) -> None:
    page.wait_for_function(
        "() => { const i = document.getElementById('stimulus');"
        " const a = document.querySelector('#label-form .answers');"
        " return !!i && !!a && i.complete && i.naturalWidth > 0"
        " && !i.classList.contains('pending') && !a.hasAttribute('aria-busy'); }"
    )


def _shown_item(page: Page, demo: ServedDemo) -> tuple[str, int | None]:
    """The kind and expected answer of the item on screen, read from the demo's database."""
    _wait_until_answerable(page)
    assignment_id = page.locator("input[name=assignment]").input_value()
    [(kind, expected)] = demo.query(
        "SELECT i.kind, i.expected_label FROM labeling_assignment a "
        "JOIN study_studyitem i ON i.id = a.item_id WHERE a.public_id = ?",
        uuid.UUID(assignment_id).hex,  # how Django stores a UUID in SQLite
    )
    return kind, expected


def _answer(page: Page, key: str) -> None:
    page.wait_for_timeout(350)  # slower than the study's "too fast" answers
    page.keyboard.press(key)


def test_an_annotator_goes_through_the_whole_demo_study(demo: ServedDemo, page: Page) -> None:
    page.goto(demo.base + demo.join_path)
    expect(page.get_by_role("heading", name="Before you start")).to_be_visible()
    expect(page.get_by_text("This is advstudy's demo study")).to_be_visible()
    expect(page.locator("#study-title")).to_have_text("Which digit is this?")
    expect(page.locator("#expected-duration")).to_contain_text("minute")
    expect(page.locator("#contact")).to_contain_text("demo@example.org")
    screenshot(page, "demo-01-consent")
    page.get_by_role("button", name="I agree").click()
    expect(page.get_by_role("heading", name="Instructions")).to_be_visible()
    expect(page.get_by_text("A few practice images come first")).to_be_visible()
    screenshot(page, "demo-02-instructions")
    page.get_by_role("button", name="Start").click()
    page.wait_for_url("**/label/")

    # Practice, with feedback on every image: the second is answered wrong on purpose.
    for number in (1, 2, 3):
        expect(page.locator("#progress-text")).to_have_text(f"Practice image {number} of 3")
        kind, expected = _shown_item(page, demo)
        assert kind == "practice"
        assert expected is not None
        _answer(page, str(expected if number != 2 else (expected + 1) % 10))
        expect(page.locator("#feedback-text")).to_contain_text(
            "Correct!" if number != 2 else "Not quite"
        )
        screenshot(page, f"demo-03-practice-feedback-{number}")
        page.keyboard.press("Enter")

    # The main trials, attention checks among them (answered right), until the end.
    expect(page.locator("#progress-text")).to_have_text(re.compile(r"^Image 1 of \d+$"))
    total = int((page.locator("#progress-text").text_content() or "").rsplit(" ", 1)[1])
    kinds: list[str] = []
    for number in range(1, total + 1):
        expect(page.locator("#progress-text")).to_have_text(f"Image {number} of {total}")
        kind, expected = _shown_item(page, demo)
        kinds.append(kind)
        if kind == "attention":
            screenshot(page, f"demo-05-attention-check-{kinds.count(kind)}")
        elif number == 1:
            screenshot(page, "demo-04-main-trial")
        with page.expect_request("**/api/labels"):
            _answer(page, str(expected) if kind == "attention" else "3")
    expect(page.get_by_role("heading", name="Thank you!")).to_be_visible()
    screenshot(page, "demo-06-completion")

    [(completed, failures, excluded)] = demo.query(
        "SELECT completed_at, attention_failures, excluded FROM labeling_participant"
    )
    labels = dict(
        demo.query(
            "SELECT i.kind, COUNT(*) FROM labeling_label l "
            "JOIN study_studyitem i ON i.id = l.item_id GROUP BY i.kind"
        )
    )
    assert completed is not None
    assert (failures, excluded) == (0, 0)
    assert labels.pop("practice") == 3
    assert labels.pop("attention") == 2 == kinds.count("attention")
    assert sum(labels.values()) == 12 == len(kinds) - 2  # main and control items


def test_a_queued_job_returns_at_once_and_its_page_shows_the_worker_progress(
    demo: ServedDemo, page: Page
) -> None:
    [(setting_id,)] = demo.query(
        "SELECT id FROM attacks_attacksetting WHERE name = 'demo-nn-invariance-linf-0.3'"
    )
    before = _examples(demo, setting_id)
    page.goto(f"{demo.base}/accounts/login/")
    page.get_by_label("Username").fill("researcher")
    page.get_by_label("Password").fill(demo.password)
    page.get_by_role("button", name="Sign in").click()
    page.goto(f"{demo.base}/researcher/settings/{setting_id}/")
    job_form = page.locator(f"form[action$='/settings/{setting_id}/jobs/']")
    # 30 chunks: long enough for the page's one-second poll to catch the job part done
    # (6 chunks once ran between two polls in CI).
    job_form.locator("input[name=count]").fill("60")
    job_form.locator("input[name=chunk_size]").fill("2")

    started = time.monotonic()
    job_form.locator("[type=submit]").click()
    page.wait_for_url("**/researcher/jobs/*/")
    answered_s = time.monotonic() - started
    expect(page.locator("#live-status")).to_have_text(re.compile("queued|running"))
    screenshot(page, "demo-07-job-queued")

    # The page polls the job's status: follow what it shows until the job succeeds.
    shown: list[tuple[str, float]] = []
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        try:
            status = page.locator("#live-status").text_content(timeout=2000) or ""
            value = float(page.locator("#live-progress").evaluate("bar => bar.value"))
        except PlaywrightError:  # the page reloads itself when the job ends
            continue
        if not shown or shown[-1] != (status, value):
            shown.append((status, value))
            if status == "running" and 0 < value < 1:
                screenshot(page, "demo-08-job-progress")
        if status == "succeeded":
            break
        time.sleep(0.2)
    screenshot(page, "demo-09-job-succeeded")

    job_id = int(page.url.rstrip("/").rsplit("/", 1)[1])
    [(status, host)] = demo.query(
        "SELECT status, worker_host FROM attacks_generationjob WHERE id = ?", job_id
    )
    assert answered_s < 5, f"queueing took {answered_s:.1f} s: did the job run in the request?"
    assert shown[-1] == ("succeeded", 1.0), shown
    assert [value for status, value in shown if status == "running" and 0 < value < 1], shown
    assert status == "succeeded"
    assert host  # a worker ran it
    assert _examples(demo, setting_id) == before + 60


def _examples(demo: ServedDemo, setting_id: int) -> int:
    [(count,)] = demo.query("SELECT COUNT(*) FROM attacks_example WHERE setting_id = ?", setting_id)
    return int(count)
