"""A person's steps over real HTTP (requests): a researcher signing in, an annotator
labelling through the open link, and a server started for them in a subprocess."""

from __future__ import annotations

import json
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urljoin

import requests

REPOSITORY = Path(__file__).resolve().parent.parent
_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_CONFIG = re.compile(r'<script id="annotator-config" type="application/json">(.*?)</script>', re.S)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def serving(arguments: list[str], environment: dict[str, str]) -> Iterator[str]:
    """``python <arguments> --addr 127.0.0.1:<port>`` until the block ends; its base URL."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, *arguments, "--addr", f"127.0.0.1:{port}"],
        cwd=REPOSITORY,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        # Importing torch and Django takes seconds, far more on a loaded machine.
        deadline = time.monotonic() + 120
        while True:
            try:
                requests.get(f"{base}/healthz", timeout=30)
                break
            except requests.ConnectionError:
                assert server.poll() is None, server.stderr.read() if server.stderr else ""
                assert time.monotonic() < deadline, f"nothing answered at {base} in 120 s"
                time.sleep(0.2)
        yield base
    finally:
        server.terminate()
        server.wait(timeout=30)


def _form(session: requests.Session, url: str, fields: dict[str, str]) -> requests.Response:
    page = session.get(url)
    token = _CSRF.search(page.text)
    assert token, f"no form at {url}"
    return session.post(url, data={"csrfmiddlewaretoken": token.group(1), **fields}, headers={
        "Referer": url
    })  # fmt: skip


def signed_in(base: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    reply = _form(session, f"{base}/accounts/login/", {"username": username, "password": password})
    assert reply.ok, reply.text[:500]
    assert "sessionid" in session.cookies, "not signed in"
    return session


def annotate(join_url: str, value: int) -> int:
    """A new annotator through consent and instructions, answering ``value`` to every
    trial through the page's JSON API; how many answers were stored."""
    session = requests.Session()
    _form(session, join_url.rstrip("/") + "/consent/", {"choice": "agree"})
    page = _form(session, join_url.rstrip("/") + "/instructions/", {})
    config = json.loads(_CONFIG.search(page.text).group(1))
    token = _CSRF.search(page.text).group(1)
    state, stored = config["state"], 0
    while not state.get("done"):
        body = {"assignment": state["assignment"], "value": value, "client_key": str(uuid.uuid4()),
                "client_response_ms": 900}  # fmt: skip
        reply = session.post(
            urljoin(join_url, config["urls"]["labels"]),
            json=body,
            headers={"X-CSRFToken": token, "Referer": join_url},
        )
        assert reply.status_code == 200, reply.text
        answer = reply.json()
        stored += bool(answer.get("stored"))
        state = answer.get("next") or session.get(urljoin(join_url, config["urls"]["next"])).json()
    return stored
