"""What the load benchmark measures besides latency: CPU use, and the database's integrity."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from study.models import Study

# ---- CPU use, read from /proc while a level runs ----

_TICK = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: str) -> tuple[int, float] | None:
    """(parent pid, CPU seconds) of a process, or None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK


def _cmdline(pid: str) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return ""


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / _TICK, sum(values) / _TICK


@dataclass
class CpuSampler:
    """CPU seconds used by gunicorn (master and workers) and by our database's backends.

    Backends come and go (connections live 60 s), so /proc is read every half second
    and each process counts from the first time it was seen (from zero if it started
    during the level).
    """

    gunicorn_pid: int
    database: str
    first: dict[tuple[str, str], float] = field(default_factory=dict)
    last: dict[tuple[str, str], float] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)
    scans: int = 0

    def scan(self) -> None:
        for pid in (entry for entry in os.listdir("/proc") if entry.isdigit()):
            stat = _proc_stat(pid)
            if stat is None:
                continue
            parent, seconds = stat
            group = self.group_of(pid, parent)
            if group is None:
                continue
            key = (group, pid)
            self.first.setdefault(key, seconds if self.scans == 0 else 0.0)
            self.last[key] = seconds
        self.scans += 1

    def group_of(self, pid: str, parent: int) -> str | None:
        if int(pid) == self.gunicorn_pid or parent == self.gunicorn_pid:
            return "gunicorn"
        if f" {self.database} " in _cmdline(pid).replace("\x00", " "):
            return "postgres"
        return None

    def run(self) -> None:
        while not self.stop.wait(0.5):
            self.scan()

    def seconds(self, group: str) -> float:
        return sum(self.last[key] - self.first[key] for key in self.last if key[0] == group)


@contextmanager
def sampling(sampler: CpuSampler) -> Iterator[None]:
    sampler.scan()
    thread = threading.Thread(target=sampler.run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        sampler.stop.set()
        thread.join()
        sampler.scan()


# ---- the integrity check (docs/architecture.md, rule 5) ----


def check_integrity(
    study: Study, acknowledged_keys: list[str], *, complete: bool
) -> list[tuple[bool, str]]:
    from django.db.models import Count, F, IntegerField, OuterRef, Q, Subquery
    from django.db.models.functions import Coalesce

    from labeling.models import Assignment, Label, Participant
    from study.models import StudyItem

    k = study.labels_per_item
    labels = Label.objects.filter(item__study=study)
    counted = StudyItem.objects.filter(
        study=study, kind__in=[StudyItem.Kind.MAIN, StudyItem.Kind.CONTROL]
    )

    def per_item(queryset: Any) -> Any:
        grouped = queryset.filter(item=OuterRef("pk")).order_by().values("item")
        count = grouped.annotate(n=Count("id")).values("n")
        return Coalesce(Subquery(count, output_field=IntegerField()), 0)

    # Analysed labels: an excluded participant's stay stored but gave their slots back.
    items = counted.annotate(
        labels_n=per_item(Label.objects.filter(participant__excluded=False)),
        active_n=per_item(Assignment.objects.filter(status=Assignment.Status.ACTIVE)),
    )
    total = items.count()
    exact = items.filter(labels_n=k).count()
    short = items.filter(labels_n__lt=k)
    missing = sum(k - n for n in short.values_list("labels_n", flat=True))
    over = items.filter(labels_n__gt=k).count()
    repeats = labels.values("participant", "item").annotate(n=Count("id")).filter(n__gt=1).count()
    wrong_status = labels.exclude(assignment__status=Assignment.Status.LABELLED).count()
    mismatched = labels.filter(
        ~Q(assignment__item=F("item")) | ~Q(assignment__participant=F("participant"))
    ).count()
    unlabelled = Assignment.objects.filter(
        item__study=study, status=Assignment.Status.LABELLED, label__isnull=True
    ).count()
    bad_labelled = items.exclude(labelled_count=F("labels_n")).count()
    bad_assigned = items.exclude(assigned_count=F("labels_n") + F("active_n")).count()
    active = items.filter(active_n__gt=0).count()
    stored = {str(key) for key in labels.values_list("client_key", flat=True)}
    acknowledged = set(acknowledged_keys)
    lost = len(acknowledged - stored)
    unacknowledged = len(stored - acknowledged)
    participants = Participant.objects.filter(study=study)
    bad_counters = _participants_with_wrong_counters(participants)
    excluded_labels = labels.filter(participant__excluded=True).count()
    full = participants.annotate(
        main=Count(
            "labels", filter=Q(labels__item__kind__in=[StudyItem.Kind.MAIN, StudyItem.Kind.CONTROL])
        )
    ).filter(main=study.items_per_participant)
    lines = [
        (
            exact == total or not complete,
            f"counted items with exactly k = {k} analysed labels: {exact}/{total}"
            f" ({len(short)} with fewer, {missing} labels short; {over} with more)"
            + ("" if complete else " (the level was cut short: incomplete)"),
        ),
        (over == 0, f"items over k analysed labels (a doubled label): {over}"),
        (lost == 0, f"answers acknowledged to the client but not stored (lost): {lost}"),
        (
            unacknowledged == 0 or not complete,
            f"labels stored whose answer never reached the client: {unacknowledged}"
            + ("" if complete or not unacknowledged else " (requests cut off when it stopped)"),
        ),
        (
            len(acknowledged_keys) == len(acknowledged),
            f"client_keys acknowledged twice: {len(acknowledged_keys) - len(acknowledged)}",
        ),
        (repeats == 0, f"(participant, item) pairs labelled more than once: {repeats}"),
        (wrong_status == 0, f"labels whose assignment is not LABELLED: {wrong_status}"),
        (unlabelled == 0, f"LABELLED assignments without a label: {unlabelled}"),
        (
            mismatched == 0,
            f"labels whose item or participant differs from their assignment's: {mismatched}",
        ),
        (
            bad_labelled == 0,
            f"items whose labelled_count differs from their analysed labels: {bad_labelled}",
        ),
        (
            bad_assigned == 0,
            f"items whose assigned_count differs from analysed labels + active leases: "
            f"{bad_assigned}",
        ),
        (active == 0 or not complete, f"items still leased at the end: {active}"),
        (
            bad_counters == 0,
            f"participants whose attention failures or fast answers differ from their "
            f"labels: {bad_counters}",
        ),
        (
            True,
            f"participants: {participants.count()}, completed "
            f"{participants.exclude(completed_at=None).count()}, excluded "
            f"{participants.filter(excluded=True).count()}, with all "
            f"{study.items_per_participant} counted items {full.count()}; labels stored "
            f"{labels.count()} (counted {labels.filter(item__in=counted).count()}; of excluded "
            f"participants, kept but not analysed, {excluded_labels})",
        ),
    ]
    return lines


def _participants_with_wrong_counters(participants: Any) -> int:
    """The exclusion rules read these counters: they must equal the rows they count."""
    from django.db.models import Count, Q

    from labeling.models import Assignment, Label

    def per_participant(rows: Any) -> dict[int, int]:
        return dict(rows.order_by().values_list("participant").annotate(n=Count("id")))

    failed = per_participant(
        Assignment.objects.filter(participant__in=participants, item__kind="attention").filter(
            Q(label__is_correct=False) | Q(status=Assignment.Status.TIMED_OUT)
        )
    )
    fast = per_participant(
        Label.objects.filter(participant__in=participants, too_fast=True).exclude(
            item__kind="practice"
        )
    )
    kept = participants.values_list("pk", "attention_failures", "fast_responses")
    return sum(
        (failures, fast_n) != (failed.get(pk, 0), fast.get(pk, 0)) for pk, failures, fast_n in kept
    )
