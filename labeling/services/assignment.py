"""The assignment engine: which item a participant sees next, and the leases on items.

The order of one participant's trials: every practice item first, in order; then
main and control items ("counted": exactly k labels each) drawn stratum by stratum
so that each participant sees a balanced mix, with attention checks at seeded
positions in between. Practice and attention items are not limited by k and
never expire; only counted items hold a slot in ``assigned_count``.

A participant holds at most two active assignments: the current item and the
following one, which the page preloads. The following item's clock and lease
start when it becomes current (see ``start_next_trial``).
"""

from __future__ import annotations

import copy
import functools
import hashlib
import random
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import timedelta
from enum import StrEnum

from django.conf import settings
from django.db import transaction
from django.db.models import Count, F, QuerySet
from django.utils import timezone

from labeling.models import Assignment, Participant
from labeling.services import statements
from labeling.services.errors import (
    AssignmentBusy,
    NotAnswerable,
    StudyClosed,
    StudyFull,
    StudyNotOpen,
)
from study.models import ANALYSED_ITEM_KINDS, Study, StudyItem

_CLAIM_ATTEMPTS = 12
_CLAIM_BACKOFF_S = 0.02  # 12 attempts back off for about 1.6 s in all
_HELD = 2  # the current item and the one after it
# Strata a claim tries with one index-ordered query each before it falls back to a scan
# of every stratum with free items (which only happens near the end of a study).
_DIRECT_STRATUM_TRIES = 3
COUNTED_KINDS = ANALYSED_ITEM_KINDS


class Phase(StrEnum):
    PRACTICE = "practice"
    MAIN = "main"


@dataclass(frozen=True)
class Progress:
    done: int
    total: int


@dataclass(frozen=True)
class Trial:
    current: Assignment
    following: Assignment | None
    phase: Phase
    progress: Progress


@dataclass(frozen=True)
class StudyShape:
    """A study's item pool as the engine needs it: fixed once the study leaves draft."""

    practice_items: int
    attention_items: int
    counted_strata: tuple[int, ...]


# Per web process, by (study id, join token). Every trial needs these; counting them
# per trial cost two queries over the study's items, and they cannot change while
# participants take part (items are only replaced in draft).
_shapes: dict[tuple[int, str], StudyShape] = {}


def study_shape(study: Study) -> StudyShape:
    key = (study.pk, study.join_token)
    shape = _shapes.get(key)
    if shape is None:
        shape = _count_shape(study)
        if study.status != Study.Status.DRAFT:
            _shapes[key] = shape
    return shape


def forget_study_shape(study: Study) -> None:
    """For code that changes a non-draft study's items (tests that add items to a live one)."""
    _shapes.pop((study.pk, study.join_token), None)
    _practice.pop((study.pk, study.join_token), None)


# Per web process, as the shapes: each study's practice items (with their images' names),
# which every participant is leased in turn; loading the item with each lease cost a
# statement per practice trial.
_practice: dict[tuple[int, str], dict[int, StudyItem]] = {}


def _practice_item(study: Study, item_id: int) -> StudyItem:
    """A copy of the study's practice item ``item_id``, its example's image name loaded."""
    key = (study.pk, study.join_token)
    items = _practice.get(key)
    if items is None or item_id not in items:
        items = statements.practice_items(study)
        if study.status != Study.Status.DRAFT:
            _practice[key] = items
    return copy.copy(items[item_id])  # each request's own instance of the shared one


def _count_shape(study: Study) -> StudyShape:
    rows = (
        StudyItem.objects.filter(study=study)
        .order_by()
        .values_list("kind", "stratum")
        .annotate(count=Count("id"))
    )
    per_kind: Counter[str] = Counter()
    strata: set[int] = set()
    for kind, stratum, count in rows:
        per_kind[kind] += count
        if kind in COUNTED_KINDS:
            strata.add(stratum)
    return StudyShape(
        per_kind[StudyItem.Kind.PRACTICE], per_kind[StudyItem.Kind.ATTENTION], tuple(sorted(strata))
    )


def lease_duration(study: Study) -> timedelta:
    return timedelta(minutes=study.lease_minutes or settings.ADVSTUDY_LEASE_MINUTES)


# Per web process: when it last swept each study (time.monotonic()).
_last_sweep: dict[int, float] = {}


def sweep_expired_leases_now_and_then(study: Study, *, force: bool = False) -> None:
    """Release expired leases at most every ADVSTUDY_LEASE_SWEEP_SECONDS per process.

    A lease expires minutes after it starts, so a few seconds' delay in giving
    its item back changes nothing, while sweeping on every trial made each
    trial pay for a query over all of the study's active leases. ``force``
    sweeps anyway (a claim that found nothing free).
    """
    now = time.monotonic()
    last = _last_sweep.get(study.pk)
    if force or last is None or now - last >= settings.ADVSTUDY_LEASE_SWEEP_SECONDS:
        _last_sweep[study.pk] = now
        release_expired_leases(study)
        _apply_pending_exclusions(study)


def _apply_pending_exclusions(study: Study) -> None:
    """Exclusions whose answer could not move their slots (and whose commit hook failed)."""
    # Here, not at import: exclusion imports this module.
    from labeling.services.exclusion import apply_pending_decisions

    apply_pending_decisions(study)


@transaction.atomic
def release_expired_leases(study: Study) -> int:
    """Return counted items whose lease ran out to the pool."""
    expired = list(
        Assignment.objects.select_for_update(skip_locked=True, of=("self",))
        .filter(
            item__study=study,
            item__kind__in=COUNTED_KINDS,
            status=Assignment.Status.ACTIVE,
            lease_expires_at__lt=timezone.now(),
        )
        # One lock order for items across concurrent releasers: no deadlock between them.
        .order_by("item_id")
    )
    for assignment in expired:
        give_back(assignment, Assignment.Status.EXPIRED)
    return len(expired)


def give_back(assignment: Assignment, status: str) -> None:
    """End a locked, active counted assignment without a label: its slot returns to the pool."""
    assignment.status = status
    assignment.save(update_fields=["status"])
    StudyItem.objects.filter(pk=assignment.item_id).update(assigned_count=F("assigned_count") - 1)


def lock_participant(participant: Participant) -> Participant:
    """A fresh copy, locked: one claim or answer at a time per participant (two tabs).

    NO KEY: it must not wait on the KEY SHARE locks that inserting their rows takes.
    """
    return statements.locked_participant(participant.pk)


def next_assignment(participant: Participant) -> Assignment | None:
    """The participant's current item; None when they are done."""
    trial = next_trial(participant)
    return trial.current if trial else None


def next_trial(participant: Participant) -> Trial | None:
    """The current item (a reload resumes it) and the next one; None when they are done."""
    # Sweeps run in their own transaction: holding expired items' locks while claiming
    # could deadlock.
    sweep_expired_leases_now_and_then(participant.study)
    trial, over = _next_trial(participant)
    if trial is None and not over:
        # Nothing free: expired leases may hold the last items; sweep now and look again.
        sweep_expired_leases_now_and_then(participant.study, force=True)
        trial, _ = _next_trial(participant)
    return trial


def _next_trial(participant: Participant) -> tuple[Trial | None, bool]:
    """The trial, and whether the participant's list is over: then nothing a sweep frees
    could go to them, and ``next_trial`` forces none."""
    with transaction.atomic():
        locked = lock_participant(participant)
        return next_trial_of_locked(locked)


def next_trial_of_locked(
    locked: Participant, *, attempts: int = _CLAIM_ATTEMPTS
) -> tuple[Trial | None, bool]:
    """``next_trial`` inside the caller's transaction, for a participant it has locked, and
    whether their list is over (no trial will come, whatever a sweep frees).

    ``attempts``: how long to wait out racers for the current item (see
    ``_claim_counted_item_by_scan``); the answer endpoint passes 1, so that it never
    sleeps while it holds the locks of the answer it stores.
    """
    trial, counts = _trial_of_locked(locked, attempts)
    return trial, trial is None and (counts is None or _list_complete(locked, counts))


def _trial_of_locked(locked: Participant, attempts: int) -> tuple[Trial | None, TrialCounts | None]:
    """The trial and the counts it was chosen by (None for a session that has ended)."""
    if locked.excluded or locked.completed_at is not None:
        return None, None
    active, rows = statements.trial_state(locked)
    counts = trial_counts(rows)
    if locked.study.status == Study.Status.LIVE:
        _claim_up_to_held(locked, active, counts, attempts)
    else:
        active = _trial_on_screen(locked, active)
    if not active:
        _end_of_list(locked)
        return None, counts
    phase, progress = _phase_and_progress(locked, active[0], counts)
    return Trial(active[0], active[1] if len(active) > 1 else None, phase, progress), counts


def _list_complete(locked: Participant, counts: TrialCounts) -> bool:
    """Every trial of the participant's list is held or done (``_claim_next`` has nothing
    left to give them, whatever is free)."""
    study = locked.study
    return (
        counts.practice >= study_shape(study).practice_items
        and counts.attention >= planned_attention_checks(study)
        and counts.counted >= study.items_per_participant
    )


def _end_of_list(locked: Participant) -> None:
    """The list is over: an exclusion that a failed attention check left pending applies."""
    # Here, not at import: quality imports this module.
    from labeling.services.quality import exclude_if_rules_broken

    exclude_if_rules_broken(locked)


_PAUSED = "This study is paused at the moment. Please try again later."
_CLOSED = "This study has closed. Thank you for taking part."
_NOT_HANDING_OUT = "This study is not handing out images at the moment."


def _trial_on_screen(locked: Participant, active: list[Assignment]) -> list[Assignment]:
    """Paused: the current trial alone, which may still be answered; closed: nothing."""
    status = locked.study.status
    if status == Study.Status.CLOSED:
        raise StudyClosed(_CLOSED)
    if status == Study.Status.PAUSED and active:
        return active[:1]
    raise StudyNotOpen(_PAUSED if status == Study.Status.PAUSED else _NOT_HANDING_OUT)


def check_answerable(locked: Participant, assignment: Assignment) -> None:
    """Refuse an answer that the study's state forbids; nothing is stored then.

    ``locked.study.status`` must have been read after the participant's lock was taken
    (``statements.locked_assignment`` reads it): closing a study takes every
    participant's lock first (``study.services.change_status``), so an answer either
    commits before the close or reads "closed" here. Paused: only the trial on screen
    (the current one) may be answered, or a label already stored sent again.
    """
    status = locked.study.status
    if status == Study.Status.CLOSED:
        raise NotAnswerable("this study has closed: answers are no longer stored", closed=True)
    if status == Study.Status.LIVE or assignment.status == Assignment.Status.LABELLED:
        return
    current = statements.active_assignments(locked)
    if status != Study.Status.PAUSED or not current or current[0].pk != assignment.pk:
        raise NotAnswerable("this study is paused: only the image on screen can be answered")


def no_free_slot_refusal(study: Study) -> StudyNotOpen:
    """Why a live study without a free slot admits no one: it is full, or every slot is held."""
    short = StudyItem.objects.filter(
        study=study, kind__in=COUNTED_KINDS, labelled_count__lt=study.labels_per_item
    )
    if not short.exists():
        return StudyFull("This study is full: it has all the answers it needs.")
    # Leases may still expire and free some slots.
    return StudyNotOpen(
        "Every image of this study is being labelled by someone right now. "
        "Please try again in a few minutes."
    )


@dataclass
class TrialCounts:
    """One participant's trials held or finished (an expired one gave its item back: no trial).

    Read once per request (``statements.trial_state``) and kept up to date as trials are
    claimed.
    """

    practice: int = 0
    counted: int = 0
    attention: int = 0
    finished_practice: int = 0
    finished_main: int = 0  # counted and attention trials answered (or timed out)
    per_stratum: Counter[int] = field(default_factory=Counter)  # counted trials only

    def add(self, kind: str, stratum: int, *, finished: bool, trials: int = 1) -> None:
        if kind == StudyItem.Kind.PRACTICE:
            self.practice += trials
            self.finished_practice += trials if finished else 0
            return
        self.finished_main += trials if finished else 0
        if kind == StudyItem.Kind.ATTENTION:
            self.attention += trials
        elif kind in COUNTED_KINDS:
            self.counted += trials
            self.per_stratum[stratum] += trials


def trial_counts(rows: Iterable[statements.TrialRow]) -> TrialCounts:
    counts = TrialCounts()
    for kind, stratum, status, trials in rows:
        counts.add(kind, stratum, finished=status != Assignment.Status.ACTIVE, trials=trials)
    return counts


def _claim_up_to_held(
    participant: Participant, active: list[Assignment], counts: TrialCounts, attempts: int
) -> None:
    try:
        while len(active) < _HELD:
            # Wait out racers only for the current item; the preloaded one can come later.
            claimed = _claim_next(participant, counts, attempts if not active else 1)
            if claimed is None:
                return
            active.append(claimed)
            counts.add(claimed.item.kind, claimed.item.stratum, finished=False)
    except AssignmentBusy:
        if not active:
            raise


def _claim_next(participant: Participant, counts: TrialCounts, attempts: int) -> Assignment | None:
    study = participant.study
    if counts.practice < study_shape(study).practice_items:
        practice = _lease(participant, _lease_next_practice)
        if practice is not None:
            return practice
    checks = planned_attention_checks(study)
    position = counts.counted + counts.attention
    quota_reached = counts.counted >= study.items_per_participant
    if counts.attention < checks and (
        quota_reached or position in attention_positions(participant, checks)
    ):
        attention = _next_attention_item(participant)
        if attention is not None:
            return _create_assignment(participant, attention)
    if quota_reached:
        return None
    return _claim_counted_item(participant, counts, attempts)


def planned_attention_checks(study: Study) -> int:
    return min(study.attention_checks_per_participant, study_shape(study).attention_items)


def participant_seed(participant: Participant) -> str:
    """Seeds this participant's orders: reproducible from the study's seed, different per person."""
    return f"{participant.study.seed}:{participant.public_id}"


def _seeded_rank(participant: Participant, key: int) -> bytes:
    return _rank(participant_seed(participant), key)


def _rank(seed: str, key: int) -> bytes:
    return hashlib.sha256(f"{seed}:{key}".encode()).digest()


@functools.lru_cache(maxsize=4096)
def _ranked(seed: str, strata: tuple[int, ...]) -> tuple[int, ...]:
    """``strata`` in a participant's seeded order. Kept: each of their trials asks again,
    and hashing every stratum was a sizeable share of a claim's time."""
    return tuple(sorted(strata, key=lambda stratum: _rank(seed, stratum)))


def attention_positions(participant: Participant, checks: int) -> frozenset[int]:
    """Main-phase trial indices of the attention checks: one in each equal stretch of the list.

    Spread out rather than bunched, and not where a participant could predict them.
    """
    total = participant.study.items_per_participant + checks
    rng = random.Random(participant_seed(participant))
    return frozenset(
        rng.randrange(total * number // checks, total * (number + 1) // checks)
        for number in range(checks)
    )


def _next_attention_item(participant: Participant) -> StudyItem | None:
    unseen = list(
        StudyItem.objects.filter(study=participant.study, kind=StudyItem.Kind.ATTENTION)
        .exclude(assignments__participant=participant)
        .select_related("example")
    )
    return min(unseen, key=lambda item: _seeded_rank(participant, item.pk), default=None)


def _counted_candidates(participant: Participant) -> QuerySet[StudyItem]:
    """Items with a free slot that this participant has not had."""
    study = participant.study
    return StudyItem.objects.filter(
        study=study, kind__in=COUNTED_KINDS, assigned_count__lt=study.labels_per_item
    ).exclude(assignments__participant=participant)


def _claim_counted_item(
    participant: Participant, counts: TrialCounts, attempts: int
) -> Assignment | None:
    # The usual case: a stratum due for this participant still has a free item, and one
    # statement per stratum tried finds it through the (study, kind, stratum, ...) index.
    every_stratum = study_shape(participant.study).counted_strata
    for stratum in _due_strata(participant, counts, every_stratum)[:_DIRECT_STRATUM_TRIES]:
        claimed = _take_free_item(participant, stratum)
        if claimed is not None:
            return claimed
    return _claim_counted_item_by_scan(participant, counts, attempts)


def _claim_counted_item_by_scan(
    participant: Participant, counts: TrialCounts, attempts: int
) -> Assignment | None:
    """The due strata were used up or busy: look at which strata still have free items."""
    candidates = _counted_candidates(participant)
    for attempt in range(attempts):
        # order_by(): the model's default ordering would make DISTINCT per row.
        available = set(candidates.order_by().values_list("stratum", flat=True).distinct())
        if not available:
            return None  # truly nothing left for this participant
        for stratum in _due_strata(participant, counts, available):
            claimed = _take_free_item(participant, stratum)
            if claimed is not None:
                return claimed
        if attempt + 1 < attempts:
            # Every candidate of the strata due is locked by a racer for a few milliseconds.
            # Waiting on the lock instead could deadlock: a waiting FOR UPDATE ... LIMIT 1
            # keeps the locks of rows it passes that fail the recheck. Drawing from another
            # stratum instead would unbalance this participant's list.
            time.sleep(_CLAIM_BACKOFF_S * (attempt + 1))
    raise AssignmentBusy("every free item is being claimed right now; try again in a moment")


def _due_strata(participant: Participant, counts: TrialCounts, strata: Iterable[int]) -> list[int]:
    """Of ``strata``, the order in which this participant's next counted trial tries them.

    A participant's list holds each stratum equally often (give or take one), in a
    uniformly random order: the next stratum is drawn with a probability proportional to
    how many trials of it the list still owes, as dealing a shuffled deck would. Drawn
    round by round (every stratum once, then again), a stratum would recur at a fixed
    distance, and an easy item could give away a hard one's label.
    """
    owed = _owed_trials(participant, counts)
    candidates = sorted(set(strata))
    still_owed = [stratum for stratum in candidates if owed.get(stratum, 0) > 0]
    if still_owed:
        keys = _draw_keys(participant, counts.counted, owed)
        return sorted(still_owed, key=lambda stratum: -keys[stratum])
    # The strata the list owes are used up: the fewest held of the others keep it balanced.
    fewest = min((counts.per_stratum[stratum] for stratum in candidates), default=0)
    due = [stratum for stratum in candidates if counts.per_stratum[stratum] == fewest]
    return list(_ranked(participant_seed(participant), tuple(due)))


def _owed_trials(participant: Participant, counts: TrialCounts) -> dict[int, int]:
    """Per stratum, the trials this participant's balanced list still has to give."""
    every_stratum = study_shape(participant.study).counted_strata
    if not every_stratum:
        return {}
    each, extra = divmod(participant.study.items_per_participant, len(every_stratum))
    # Which strata give one trial more than the others: the participant's own seeded pick.
    by_rank = _ranked(participant_seed(participant), tuple(every_stratum))
    return {
        stratum: each + (rank < extra) - counts.per_stratum[stratum]
        for rank, stratum in enumerate(by_rank)
    }


def _draw_keys(participant: Participant, position: int, owed: dict[int, int]) -> dict[int, float]:
    """Keys whose largest picks each stratum with a probability proportional to ``owed``.

    Efraimidis and Spirakis (2006): u ** (1 / weight) for uniform u. Seeded by the
    participant and the trial's position, so a retried claim draws the same.
    """
    rng = random.Random(f"{participant_seed(participant)}:trial:{position}")
    return {
        stratum: rng.random() ** (1 / weight) if weight > 0 else 0.0
        for stratum, weight in sorted(owed.items())
    }


def _take_free_item(participant: Participant, stratum: int) -> Assignment | None:
    """Claim a free item of ``stratum`` and lease it to ``participant`` (two statements)."""
    return _lease(participant, statements.claim_free_item, stratum)


def _lease(
    participant: Participant,
    take: Callable[[statements.Claim], statements.Claimed | None],
    stratum: int = 0,
) -> Assignment | None:
    """Lease what ``take`` finds to ``participant``, its clock and lease starting now."""
    study = participant.study
    now = timezone.now()
    claim = statements.Claim(
        study=study,
        stratum=stratum,
        participant=participant,
        public_id=uuid.uuid4(),
        served_at=now,
        expires_at=now + lease_duration(study),
    )
    claimed = take(claim)
    if claimed is None:
        return None
    assignment = Assignment(
        pk=claimed.assignment_id,
        participant=participant,
        item=claimed.item,
        public_id=claim.public_id,
        status=Assignment.Status.ACTIVE,
        served_at=claim.served_at,
        lease_expires_at=claim.expires_at,
    )
    return statements.mark_stored(assignment)


def _lease_next_practice(claim: statements.Claim) -> statements.Claimed | None:
    """Lease the participant's next practice item, if they have not had every one."""
    leased = statements.lease_next_practice(claim)
    if leased is None:
        return None
    assignment_id, item_id = leased
    return statements.Claimed(_practice_item(claim.study, item_id), assignment_id)


def take_slot_again(assignment: Assignment) -> bool:
    """An expired counted item answered late: it counts if a slot is still free."""
    labels_per_item = assignment.participant.study.labels_per_item
    return (
        StudyItem.objects.filter(pk=assignment.item_id, assigned_count__lt=labels_per_item).update(
            assigned_count=F("assigned_count") + 1
        )
        == 1
    )


def _create_assignment(participant: Participant, item: StudyItem) -> Assignment:
    now = timezone.now()
    return Assignment.objects.create(
        participant=participant,
        item=item,
        served_at=now,
        lease_expires_at=now + lease_duration(participant.study),
    )


def start_next_trial(participant: Participant) -> None:
    """The held next item becomes current now: its response clock and lease start.

    Unless the study is paused: then the trial on screen was the last one it takes, and
    what the page preloaded is handed back.
    """
    if participant.study.status != Study.Status.LIVE:
        _hand_back_held(participant)
        return
    now = timezone.now()
    statements.start_held(participant, now, now + lease_duration(participant.study))


def _hand_back_held(participant: Participant) -> None:
    """Give up a locked participant's unanswered trials, as if they had never been served.

    A counted item's slot goes back to the pool (its assignment expires); a practice or
    attention trial holds no slot, and its row goes, so that the same one comes when the
    study resumes (the practice in order, the check at its planned place).
    """
    held = (
        Assignment.objects.select_for_update(of=("self",))
        .filter(participant=participant, status=Assignment.Status.ACTIVE)
        .select_related("item")
        .order_by("item_id")
    )
    for assignment in held:
        if assignment.item.kind in COUNTED_KINDS:
            give_back(assignment, Assignment.Status.EXPIRED)
        else:
            assignment.delete()


def _phase_and_progress(
    participant: Participant, current: Assignment, counts: TrialCounts
) -> tuple[Phase, Progress]:
    study = participant.study
    if current.item.kind == StudyItem.Kind.PRACTICE:
        return Phase.PRACTICE, Progress(counts.finished_practice, study_shape(study).practice_items)
    total = study.items_per_participant + planned_attention_checks(study)
    done = counts.finished_main
    return Phase.MAIN, Progress(done, max(total, done + 1))
