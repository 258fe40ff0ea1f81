"""Set up a whole demo study on the shipped MNIST sample, then serve it with a worker.

Trains a small CNN on MNIST test images [0, 8000), attacks images from
[8000, 10000) with PGD (sensitivity) and Tramèr et al.'s nearest-neighbour
attack (invariance, neighbours from [0, 8000)), adds clean controls, practice
items and attention checks, creates a live study and a researcher account, and
prints the URLs.

Every job, the demo's own included, runs in a real Celery worker that the demo
starts beside the web server. Their broker is a folder (kombu's filesystem
transport, config/demo_broker.py), so the demo needs no Redis, and a page that
queues a job answers at once while the job's page follows its progress.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from attacks import services
from attacks.management.progress import progress_bar
from attacks.models import AttackSetting, ClassifierModel, GenerationJob, JobStatus
from config import demo_broker
from config.celery import app as celery_app
from study.design import SettingSample, StudyDesign
from study.management.commands.serve import gunicorn_command
from study.models import Study
from study.services import change_status, create_draft_study

TRAIN_RANGE = (0, 8000)
ATTACK_RANGE = (8000, 10000)
MODEL_NAME = "demo-small-cnn"
RESEARCHER = "researcher"
TITLE = "Demo: which digit is this?"
PRACTICE_ITEMS = 3
ATTENTION_POOL = 4
ATTENTION_PER_PARTICIPANT = 2
CONSENT = (
    "This is advstudy's demo study. You will see about {images} small images of "
    "handwritten digits and say which digit each one shows. Your answers are stored "
    "under a random pseudonym on the server running this demo, and nothing else about you "
    "is kept. "
    "You may stop at any time."
)
INSTRUCTIONS = (
    "Which digit do you see? Choose the digit's answer below each image. "
    'If it is none of them, or you cannot tell, choose "None / can\'t tell". '
    "A few practice images come first and tell you whether you were right."
)
# On SIGTERM the worker finishes its task at hand (a chunk takes seconds), but on the
# filesystem transport even an idle worker takes over 10 s to wind down: cut it short.
WORKER_GRACE_S = 5
SERVER_GRACE_S = 10
RowT = TypeVar("RowT", ClassifierModel, GenerationJob)


class Command(BaseCommand):
    help = (
        "Train a model, attack the shipped MNIST sample, create a live study with consent, "
        "practice, attention checks and clean controls, then serve it. Jobs run in a Celery "
        "worker that the demo starts and stops, fed through a folder (no Redis needed). "
        "Ctrl-C stops the web server and the worker."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--examples",
            type=int,
            metavar="N",
            default=24,
            help="examples per attack setting (default 24); fewer set up faster",
        )
        parser.add_argument(
            "--epochs",
            type=int,
            metavar="N",
            default=2,
            help="training epochs of the demo's model (default 2)",
        )
        parser.add_argument(
            "--addr",
            metavar="HOST:PORT",
            default="127.0.0.1:8000",
            help="host:port the web server listens on (default 127.0.0.1:8000)",
        )
        parser.add_argument(
            "--no-serve",
            action="store_true",
            help="set up (through the worker), stop the worker, and exit without serving",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["examples"] < 1 or options["epochs"] < 1:
            raise CommandError("--examples and --epochs must be at least 1.")
        # SIGTERM (a service manager, a test) stops the demo as Ctrl-C does; SIGINT too
        # where a shell started the demo in the background, which ignores it.
        signal.signal(signal.SIGTERM, _interrupt)
        signal.signal(signal.SIGINT, _interrupt)
        folder = Path(tempfile.mkdtemp(prefix="advstudy-demo-broker-"))
        try:
            demo_broker.use_folder(celery_app, folder)
            call_command("migrate", verbosity=0, interactive=False)
            with _worker(folder) as worker:
                self.worker = worker
                self.stdout.write(f"Celery worker started (pid {worker.process.pid}), on {folder}.")
                self._set_up_and_serve(options)
        except KeyboardInterrupt:
            self.stdout.write("\nStopped: the web server and the worker are down.")
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def _set_up_and_serve(self, options: dict[str, Any]) -> None:
        count = options["examples"]
        # The researcher owns the demo's model and settings, so may queue jobs on them.
        self.owner = get_user_model().objects.get_or_create(
            username=RESEARCHER, defaults={"is_staff": True}
        )[0]
        model = self._model(options["epochs"])
        # The shipped standard, adversarially trained and certified models: their
        # predictions on every example let the analysis compare them with humans.
        call_command("import_zoo", stdout=self.stdout)
        settings = self._settings(model)
        gold = PRACTICE_ITEMS + ATTENTION_POOL
        for setting in settings:
            # The clean setting also holds the practice and attention images: positions
            # after the main items', whose source images the study shows nowhere else.
            self._generate(setting, count + gold if setting.kind == "clean" else count)
        study = self._study(settings, count)
        self._print_links(study, self._researcher(), options["addr"])
        if not options["no_serve"]:
            self._serve(options["addr"])

    def _print_links(self, study: Study, password: str, addr: str) -> None:
        base = f"http://{addr}"
        self.stdout.write(self.style.SUCCESS("\nThe demo is ready."))
        self.stdout.write(
            f"  Annotators join at:  {base}{reverse('join', args=[study.join_token])}"
        )
        self.stdout.write(
            f"  Researchers sign in: {base}{reverse('researcher-home')}"
            f"  (user {RESEARCHER!r}, password {password!r})"
        )
        self.stdout.write(
            f"  Analysis:            {base}{reverse('study-analysis', args=[study.pk])}"
        )
        self.stdout.write(
            f"  Dashboard:           {base}{reverse('study-dashboard', args=[study.pk])}"
        )

    def _serve(self, addr: str) -> None:
        self.stdout.write(f"Serving on {addr} with a Celery worker beside it; Ctrl-C stops both.")
        self.stdout.flush()
        with _child(gunicorn_command(addr), grace_s=SERVER_GRACE_S) as web:
            while web.poll() is None:
                self.worker.check()
                time.sleep(0.5)
        raise CommandError(f"the web server stopped (exit status {web.returncode}).")

    def _model(self, epochs: int) -> ClassifierModel:
        existing = ClassifierModel.objects.filter(
            name=MODEL_NAME, status=JobStatus.SUCCEEDED
        ).first()
        if existing:
            return existing
        ClassifierModel.objects.filter(name=MODEL_NAME).delete()
        with progress_bar("training", f"Training {MODEL_NAME}") as show:
            model = services.request_training(
                name=MODEL_NAME,
                architecture="small_cnn",
                dataset="mnist",
                training_split="test",
                training_range=TRAIN_RANGE,
                evaluation_split="test",
                evaluation_range=ATTACK_RANGE,
                config={"epochs": epochs},
                # PGD-20 keeps the demo quick; the row records what was measured.
                evaluation={"steps": 20, "step_size": 0.025},
                created_by=self.owner,
            )
            model = self.worker.follow(model, show)
        if model.status != JobStatus.SUCCEEDED:
            raise CommandError(f"training failed: {model.error}")
        self.stdout.write(
            f"{MODEL_NAME} on MNIST test {ATTACK_RANGE}: clean accuracy "
            f"{model.clean_accuracy:.4f}, PGD-20 L-inf 0.3 accuracy {model.robust_accuracy:.4f}"
        )
        return model

    def _settings(self, model: ClassifierModel) -> list[AttackSetting]:
        specs: list[tuple[str, str, dict[str, Any], ClassifierModel | None]] = [
            ("demo-pgd-linf-0.3", "pgd_linf", {"eps": 0.3, "step_size": 0.01, "steps": 40}, model),
            (
                "demo-nn-invariance-linf-0.3",
                "nn_invariance_linf",
                {
                    "eps": 0.3,
                    "pool_split": "test",
                    "pool_start": TRAIN_RANGE[0],
                    "pool_stop": TRAIN_RANGE[1],
                },
                None,
            ),
            ("demo-clean", "clean", {}, None),
        ]
        settings = []
        for name, attack, config, target in specs:
            setting = AttackSetting.objects.filter(name=name).first()
            if setting is None:
                setting = services.create_attack_setting(
                    name=name,
                    attack_name=attack,
                    config=config,
                    dataset="mnist",
                    source_split="test",
                    source_range=ATTACK_RANGE,
                    seed=2020,
                    target_model=target,
                    created_by=self.owner,
                )
            settings.append(setting)
        return settings

    def _generate(self, setting: AttackSetting, count: int) -> None:
        missing = count - setting.examples.count()
        if missing <= 0:
            return
        with progress_bar("generation", f"Generating {setting.name}") as show:
            job = services.create_generation_job(
                setting, missing, chunk_size=8, created_by=self.owner
            )
            job = self.worker.follow(job, show)
        if job.status != JobStatus.SUCCEEDED:
            raise CommandError(f"generation failed: {job.error}")

    def _study(self, settings: list[AttackSetting], count: int) -> Study:
        owner = self.owner
        existing = Study.objects.filter(owner=owner, title=TITLE).first()
        if existing:
            return existing
        attacked, clean = settings[:-1], settings[-1]
        items = min(30, count * 2)
        trials = PRACTICE_ITEMS + ATTENTION_PER_PARTICIPANT + items
        design = StudyDesign(
            title=TITLE,
            public_title="Which digit is this?",
            expected_minutes=max(1, round(trials * 4 / 60)),  # a few seconds an image
            contact="The advstudy demo, demo@example.org",
            instructions=INSTRUCTIONS,
            consent_text=CONSENT.format(images=trials),
            samples=tuple(SettingSample(setting, count) for setting in attacked),
            # Clean images of the attacked ones' sources: the human baseline.
            controls=SettingSample(clean, max(1, count // 2)),
            practice=SettingSample(clean, PRACTICE_ITEMS),
            attention=SettingSample(clean, ATTENTION_POOL),
            attention_checks_per_participant=ATTENTION_PER_PARTICIPANT,
            tells_of_known_answers=True,
            max_attention_failures=1,
            items_per_participant=items,
            labels_per_item=3,
            seed=2020,
        )
        study = create_draft_study(owner=owner, design=design)
        return change_status(study, Study.Status.LIVE, by=owner)

    def _researcher(self) -> str:
        user = get_user_model().objects.get(username=RESEARCHER)
        password = secrets.token_urlsafe(9)
        # The demo's one researcher is its lab's admin too: the admin site and the
        # invitation page are theirs to try.
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save(update_fields=["is_staff", "is_superuser", "password"])
        return password


class _Worker:
    """The demo's Celery worker process, and the log it writes."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process, self.log = process, log

    def check(self) -> None:
        if self.process.poll() is not None:
            tail = self.log.read_text(errors="replace")[-3000:]
            raise CommandError(
                f"the Celery worker stopped (exit status {self.process.returncode}); "
                f"the end of its log:\n{tail}"
            )

    def follow(self, row: RowT, show: Callable[[float], None]) -> RowT:
        """Wait for the worker to finish the row's job, drawing its progress."""
        row.refresh_from_db()
        while row.status in (JobStatus.QUEUED, JobStatus.RUNNING):
            self.check()
            show(row.progress)
            time.sleep(0.5)
            row.refresh_from_db()
        show(row.progress)
        return row


@contextmanager
def _worker(folder: Path) -> Iterator[_Worker]:
    """A worker on both queues (solo pool, as the GPU queue asks: core rule 4)."""
    command = [
        sys.executable, "-m", "celery", "-A", "config", "worker",
        "-Q", "gpu,default", "-P", "solo", "-c", "1", "-n", "demo@%h",
        "--loglevel", "INFO", "--without-gossip", "--without-mingle", "--without-heartbeat",
    ]  # fmt: skip
    log = folder / "worker.log"
    with (
        log.open("wb") as output,
        _child(command, grace_s=WORKER_GRACE_S, stdout=output) as process,
    ):
        yield _Worker(process, log)


@contextmanager
def _child(
    command: list[str], *, grace_s: float, stdout: Any = None
) -> Iterator[subprocess.Popen[bytes]]:
    """A process that ends with the demo: stopped on leaving the block, or if the demo dies."""
    process = subprocess.Popen(
        command,
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout is not None else None,
        preexec_fn=_die_with_parent,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.terminate()
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _die_with_parent() -> None:
    """Linux: a child gets SIGTERM when the demo dies, even by SIGKILL."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    pr_set_pdeathsig = 1
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() == 1:  # the demo died before the call above
        os._exit(1)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt
