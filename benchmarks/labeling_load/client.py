"""Simulated annotators for bench_labeling_load.py: an asyncio client that acts like the page.

Each annotator is one browser: its own aiohttp session, cookie jar (session id and
csrftoken) and connections. It walks the open-link flow as a person does (join,
consent, instructions, the labelling page), then labels one trial after another:

- ``--api json`` (the page with JavaScript, labeling/static/labeling/annotator.js):
  the labelling page embeds the first trial; a small image comes inline in its trial
  (``image_data``, a data: URI: checked to be a PNG, nothing fetched), a larger one
  is fetched, the following one preloaded while the current one is on screen
  (``--fetch-images`` fetches every image from its URL, as the page did before
  images came inline); an answer is a JSON POST to
  api/labels with X-CSRFToken and a fresh uuid4 client_key, and its reply carries
  the next trial (api/next is asked only when the reply has none, or with
  ``--next-from api`` before every trial).
- ``--api form`` (the page without JavaScript): the form is posted, the redirect
  followed, one page load per answer.

Every request is timed in the client, from sending it to the last byte of its body.
A 503 answer is retried after its Retry-After, as the page does; a dropped connection
or timeout re-sends the same request (for an answer: the same client_key, which the
server must answer idempotently). Both count as errors; nothing is hidden.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import re
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import aiohttp

# The request kinds of the report. "next" is any request whose answer is a trial on its
# own (the labelling page, api/next); "submit" stores an answer (and, in the JSON API,
# brings the next trial with it); "image" is one image; "entry" the steps before.
ENTRY, NEXT, SUBMIT, IMAGE, DONE = "entry", "next", "submit", "image", "done"
KINDS = (ENTRY, NEXT, SUBMIT, IMAGE, DONE)

_MAX_ERRORS_PER_ANNOTATOR = 30  # then this annotator gives up (and says so in the report)
_RESEND_BACKOFF_S = 0.5
_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_CONFIG = re.compile(r'<script id="annotator-config" type="application/json">(.*?)</script>', re.S)
_CHOICE = re.compile(r'name="value" value="(-?\d+)"')
_HIDDEN = re.compile(r'<input type="hidden" name="(assignment|client_key)" value="([^"]*)"')
_STIMULUS = re.compile(r'<img id="stimulus"[^>]*src="([^"]+)"')


@dataclass(frozen=True)
class ClientConfig:
    base_url: str
    join_token: str
    api: str = "json"  # "json" or "form"
    next_from: str = "reply"  # "reply" (as the page does) or "api" (api/next before each trial)
    think_ms: float = 1500.0  # median of the log-normal think time; 0: none
    think_sigma: float = 0.5
    ramp_s: float = 0.0  # arrivals spread uniformly over this many seconds
    request_timeout_s: float = 30.0
    fetch_images: bool = False  # fetch every image from its URL even when it came inline
    keepalive_s: float = 4.0  # below gunicorn's --keep-alive: the client closes first
    # Late arrivals topping a study up: a study that is full turns them away (403), as it should.
    may_be_turned_away: bool = False


@dataclass
class Stats:
    """What all annotators of one run saw."""

    latency_ms: dict[str, list[float]] = field(default_factory=lambda: {k: [] for k in KINDS})
    errors: Counter[str] = field(default_factory=Counter)
    acknowledged_keys: list[str] = field(default_factory=list)  # client_keys answered "stored"
    finished: int = 0  # annotators who reached the end page
    turned_away: int = 0  # late arrivals told the study has all its answers
    sent_away: int = 0  # answers refused because a researcher had excluded their annotator
    gave_up: int = 0
    first_request: float = math.inf
    last_response: float = 0.0

    @property
    def labels(self) -> int:
        return len(self.acknowledged_keys)

    def error_count(self) -> int:
        return sum(self.errors.values())


class GaveUp(Exception):
    """Too many errors for one annotator: it stops, and the report counts it."""


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")

    def json(self) -> dict[str, Any]:
        loaded = json.loads(self.body or b"{}")
        return loaded if isinstance(loaded, dict) else {}


class Annotator:
    """One simulated person with one browser."""

    def __init__(
        self, session: aiohttp.ClientSession, config: ClientConfig, stats: Stats, seed: int
    ) -> None:
        self.session = session
        self.config = config
        self.stats = stats
        self.rng = random.Random(seed)
        self.errors = 0
        self.choices: list[int] = []
        self.csrf = ""
        self.preloaded: dict[str, asyncio.Task[None]] = {}
        self.prefix = f"/s/{config.join_token}/"

    # ---- HTTP ----

    async def request(self, kind: str, method: str, url: str, **options: Any) -> Reply:
        """One request, re-sent after a 503 or a lost connection; the final answer.

        A status of 400 or more counts as an error, except a late arrival turned away.
        """
        while True:
            start = time.perf_counter()
            self.stats.first_request = min(self.stats.first_request, start)
            try:
                async with self.session.request(
                    method, url, allow_redirects=False, **options
                ) as response:
                    body = await response.read()
                    reply = Reply(response.status, body, dict(response.headers))
            except (aiohttp.ClientError, TimeoutError) as failure:
                self.error(kind, "timeout" if isinstance(failure, TimeoutError) else "connection")
                await asyncio.sleep(_RESEND_BACKOFF_S)
                continue
            end = time.perf_counter()
            self.stats.last_response = max(self.stats.last_response, end)
            self.stats.latency_ms[kind].append((end - start) * 1000)
            if reply.status == 503:
                self.error(kind, "503 busy (retried)")
                await asyncio.sleep(float(reply.headers.get("Retry-After", "2")))
                continue
            if reply.status >= 400 and not self.turned_away(kind, reply):
                self.error(kind, str(reply.status))
            return reply

    def turned_away(self, kind: str, reply: Reply) -> bool:
        if self.config.may_be_turned_away and kind == ENTRY and reply.status == 403:
            return True
        # Excluded by hand meanwhile: the answer is refused (with the end page to go to,
        # or, excluded while it waited for the lock, with "This session has ended."), and
        # the page asks for the next trial and is sent to the end, as it should be.
        if kind in (SUBMIT, NEXT) and reply.status == 409:
            body = reply.json()
            if "redirect" in body or body.get("error") == "This session has ended.":
                self.stats.sent_away += kind == SUBMIT
                return True
        return False

    def error(self, kind: str, reason: str) -> None:
        self.stats.errors[f"{kind}: {reason}"] += 1
        self.errors += 1
        if self.errors > _MAX_ERRORS_PER_ANNOTATOR:
            raise GaveUp

    async def think(self) -> float:
        """Sleep like a person looking at the image; the time taken, in ms."""
        if self.config.think_ms <= 0:
            return 0.0
        ms = self.rng.lognormvariate(math.log(self.config.think_ms), self.config.think_sigma)
        await asyncio.sleep(ms / 1000)
        return round(ms, 1)

    # ---- the flow ----

    async def run(self) -> None:
        await asyncio.sleep(self.rng.uniform(0, self.config.ramp_s))
        try:
            page = await self.enter()
            if page is None:
                self.stats.turned_away += 1
                return
            if self.config.api == "json":
                await self.label_with_api(page)
            else:
                await self.label_with_form(page)
            self.stats.finished += 1
        except GaveUp:
            self.stats.gave_up += 1
        finally:
            for task in self.preloaded.values():
                task.cancel()

    async def enter(self) -> Reply | None:
        """From the study's link through consent and instructions to the labelling page.

        None: the study turned this late arrival away (it has all its answers).
        """
        reply = await self.request(ENTRY, "GET", self.prefix)
        for _ in range(10):
            if self.turned_away(ENTRY, reply):
                return None
            if reply.status in (301, 302, 303):
                location = reply.headers["Location"]
                kind = NEXT if location.endswith("/label/") else ENTRY
                reply = await self.request(kind, "GET", location)
                continue
            if reply.status != 200:
                raise GaveUp  # already counted as an error
            path = self.path_of(reply)
            if path == "label/":
                return reply
            if path == "consent/":
                reply = await self.post_form(ENTRY, "consent/", reply, {"choice": "agree"})
            elif path == "instructions/":
                await self.think()  # reading the instructions
                reply = await self.post_form(ENTRY, "instructions/", reply, {})
            else:
                self.error(ENTRY, f"unexpected page {path!r}")
                raise GaveUp
        self.error(ENTRY, "too many redirects")
        raise GaveUp

    def path_of(self, reply: Reply) -> str:
        """Which step's page this is: the pages say so by their form or their script."""
        if 'id="annotator-config"' in reply.text or 'id="label-form"' in reply.text:
            return "label/"
        if 'id="consent-text"' in reply.text:
            return "consent/"
        if 'id="instructions-text"' in reply.text:
            return "instructions/"
        return "other"

    async def post_form(self, kind: str, step: str, page: Reply, fields: dict[str, str]) -> Reply:
        token = _CSRF.search(page.text)
        data = {"csrfmiddlewaretoken": token.group(1) if token else "", **fields}
        url = self.prefix + step
        return await self.request(kind, "POST", url, data=data, headers=self.origin())

    def origin(self) -> dict[str, str]:
        return {"Origin": self.config.base_url.rstrip("/"), "Referer": self.config.base_url}

    # ---- the JSON API, as the page's script uses it ----

    async def label_with_api(self, page: Reply) -> None:
        found = _CONFIG.search(page.text)
        token = _CSRF.search(page.text)
        if found is None or token is None:
            self.error(NEXT, "labelling page without its script config")
            raise GaveUp
        config = json.loads(found.group(1))
        self.csrf = token.group(1)
        self.choices = [int(value) for value in _CHOICE.findall(page.text)]
        urls = config["urls"]
        state: dict[str, Any] = config["state"]
        if self.config.next_from == "api":
            state = await self.api_next(urls["next"])
        while not state.get("done"):
            state = await self.answer_trial(state, urls)
        await self.request(DONE, "GET", state["redirect"])

    async def answer_trial(self, state: dict[str, Any], urls: dict[str, str]) -> dict[str, Any]:
        if state.get("image_data") and not self.config.fetch_images:
            self.check_inline_image(state["image_data"])
            if not state.get("next_image_data") and state.get("next_image"):
                self.preload(state["next_image"])
        else:
            await self.show(state["image"], state.get("next_image"))
        body = {
            "assignment": state["assignment"],
            "value": self.rng.choice(self.choices),
            "client_key": str(uuid.uuid4()),
            "client_response_ms": await self.think(),
        }
        reply = await self.request(
            SUBMIT,
            "POST",
            urls["labels"],
            json=body,
            headers={"X-CSRFToken": self.csrf, **self.origin()},
        )
        if reply.status != 200:
            await asyncio.sleep(1.5)  # the page shows the error, then asks the server
            return await self.api_next(urls["next"])
        answer = reply.json()
        if answer.get("stored"):
            self.stats.acknowledged_keys.append(body["client_key"])
        if answer.get("feedback"):
            await self.think()  # reading the practice feedback, then "Continue"
        following = answer.get("next")
        if following is None or (self.config.next_from == "api" and not following.get("done")):
            return await self.api_next(urls["next"])
        return following

    async def api_next(self, url: str) -> dict[str, Any]:
        while True:
            reply = await self.request(NEXT, "GET", url)
            if reply.status == 200:
                return reply.json()
            redirect = reply.json().get("redirect") if reply.body else None
            if redirect:
                return {"done": True, "redirect": redirect}
            await asyncio.sleep(3)  # the page says so, waits, and asks again

    async def show(self, image: str, next_image: str | None) -> None:
        """The current image (awaited: the person sees it), then the following one preloaded."""
        pending = self.preloaded.pop(image, None)
        await (pending if pending is not None else self.fetch_image(image))
        if next_image:
            self.preload(next_image)

    def preload(self, url: str) -> None:
        if url not in self.preloaded:
            self.preloaded[url] = asyncio.create_task(self.fetch_image(url))

    def check_inline_image(self, data_uri: str) -> None:
        head, _, data = data_uri.partition(",")
        if head != "data:image/png;base64" or not base64.b64decode(data).startswith(b"\x89PNG"):
            self.error(IMAGE, "inline image is not a PNG")

    async def fetch_image(self, url: str) -> None:
        reply = await self.request(IMAGE, "GET", url)
        if reply.status == 200 and not reply.body.startswith(b"\x89PNG"):
            self.error(IMAGE, "not a PNG")

    # ---- the page without JavaScript: one form post and page load per answer ----

    async def label_with_form(self, page: Reply) -> None:
        while True:
            fields = dict(_HIDDEN.findall(page.text))
            token, image = _CSRF.search(page.text), _STIMULUS.search(page.text)
            choices = [int(value) for value in _CHOICE.findall(page.text)]
            if token is None or image is None or not choices or "assignment" not in fields:
                self.error(NEXT, "labelling page without its form")
                raise GaveUp
            await self.fetch_image(image.group(1).replace("&amp;", "&"))
            data = {
                "csrfmiddlewaretoken": token.group(1),
                "assignment": fields["assignment"],
                "client_key": fields["client_key"],
                "client_response_ms": str(await self.think()),
                "value": str(self.rng.choice(choices)),
            }
            url = self.prefix + "label/"
            reply = await self.request(SUBMIT, "POST", url, data=data, headers=self.origin())
            if reply.status in (302, 303):
                self.stats.acknowledged_keys.append(fields["client_key"])
                location = reply.headers["Location"]
                page = await self.request(NEXT, "GET", location)
                while page.status in (302, 303):  # the end: label/ sends on to done/
                    page = await self.request(DONE, "GET", page.headers["Location"])
            else:
                page = await self.request(NEXT, "GET", url)
            if page.status != 200 or self.path_of(page) != "label/":
                return


async def run_annotators(config: ClientConfig, count: int, seed: int, stats: Stats) -> None:
    """``count`` annotators, each with its own browser; ``stats`` collects what they saw."""
    timeout = aiohttp.ClientTimeout(total=config.request_timeout_s)

    async def one(index: int) -> None:
        connector = aiohttp.TCPConnector(limit=4, keepalive_timeout=config.keepalive_s)
        # unsafe: keep cookies of an IP-address host (127.0.0.1), as a browser does.
        jar = aiohttp.CookieJar(unsafe=True)
        async with aiohttp.ClientSession(
            base_url=config.base_url, connector=connector, cookie_jar=jar, timeout=timeout
        ) as session:
            await Annotator(session, config, stats, seed * 1_000_003 + index).run()

    await asyncio.gather(*(one(index) for index in range(count)))
