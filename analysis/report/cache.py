"""A study's report, kept in Django's cache until what it reads changes.

The report bootstraps every measure, and the dashboard draws its charts from it: on
every view that is most of a second for a few dozen labels. So the report, and what
pages draw from it (``CachedReport.derived``: the charts), are kept under a key per
(study, report options), beside a *fingerprint* of every row the report reads:
the study's analysed items, its labels, its participants and their exclusions, the
predictions on its examples, and its settings' and models' rows. A value is served
only while the fingerprint read now equals the one stored with it, so a new label,
an exclusion, a prediction or a renamed setting gives fresh numbers on the next view;
nothing is invalidated by hand, and each key holds one report (a new fingerprint
overwrites the old one).

The fingerprint is read before the report and again after it, and the report is
stored only where the two agree: a report computed while a label arrived may hold
that label, and must not be kept under the fingerprint from before it.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from django.core.cache import caches
from django.db.models import Count, Max, Min

from analysis.report.build import study_report
from analysis.report.types import StudyReport
from attacks.models import AttackSetting, ClassifierModel, Prediction
from attacks.provenance import code_version
from labeling.models import Label, Participant
from study.models import ANALYSED_ITEM_KINDS, Study, StudyItem

logger = logging.getLogger(__name__)

# config/settings.py, CACHES: Redis where CACHE_REDIS_URL is set, else this process's memory.
CACHE_ALIAS = "reports"
# The code's version is part of every key: a deploy that changes what a report holds never
# reads an older pickle.
# A study nobody views any more gives its memory back after a week.
TIMEOUT_S = 7 * 24 * 3600

T = TypeVar("T")


@dataclass(frozen=True)
class ReportOptions:
    """What ``study_report`` is asked besides the study: each gives a report of its own."""

    include_excluded: bool = False
    exposure_within_ms: int | None = None
    bootstrap_replicates: int = 1000
    seed: int = 0

    def key(self, study_id: int, part: str) -> str:
        options = (
            f"{int(self.include_excluded)}:{self.exposure_within_ms}:"
            f"{self.bootstrap_replicates}:{self.seed}"
        )
        return f"advstudy:report:{code_version()}:{study_id}:{options}:{part}"

    @property
    def kept(self) -> bool:
        """Only the pages' own bootstrap is kept: the API lets a caller ask for any seed and
        replicate count, and each would otherwise hold a report in the cache for a week."""
        defaults = ReportOptions()
        return (self.bootstrap_replicates, self.seed) == (
            defaults.bootstrap_replicates,
            defaults.seed,
        )


@dataclass(frozen=True)
class CachedReport:
    """A report, the fingerprint of the rows it was computed from, and whether it was kept."""

    report: StudyReport
    study_id: int
    options: ReportOptions
    fingerprint: str
    kept: bool

    def derived(self, part: str, compute: Callable[[StudyReport], T]) -> T:
        """``compute(report)``, kept beside the report under ``part`` (a chart, say)."""
        key = self.options.key(self.study_id, part)
        found = _read(key, self.fingerprint)
        if found is not None:
            return found
        value = compute(self.report)
        if self.kept:
            _write(key, self.fingerprint, value)
        return value


def cached_report(study: Study, options: ReportOptions | None = None) -> CachedReport:
    """The study's report from the cache while the rows it reads are unchanged, else computed
    (and kept)."""
    options = options or ReportOptions()
    key = options.key(study.pk, "report")
    before = report_fingerprint(study)
    found = _read(key, before)
    if found is not None:
        return CachedReport(found, study.pk, options, before, kept=True)
    report = study_report(
        study,
        include_excluded=options.include_excluded,
        exposure_within_ms=options.exposure_within_ms,
        bootstrap_replicates=options.bootstrap_replicates,
        seed=options.seed,
    )
    kept = options.kept and report_fingerprint(study) == before
    if kept:
        _write(key, before, report)
    return CachedReport(report, study.pk, options, before, kept)


def cached_study_report(
    study: Study,
    *,
    include_excluded: bool = False,
    exposure_within_ms: int | None = None,
    bootstrap_replicates: int = 1000,
    seed: int = 0,
) -> StudyReport:
    """``study_report`` with the same arguments, from the cache where nothing changed."""
    options = ReportOptions(include_excluded, exposure_within_ms, bootstrap_replicates, seed)
    return cached_report(study, options).report


def report_fingerprint(study: Study) -> str:
    """A digest of every row ``study_report`` reads, in a few aggregate queries.

    Ids only grow (PostgreSQL's sequences, SQLite's AUTOINCREMENT), so a table's
    count and largest id change with any row added or deleted; labels, items and
    predictions are never edited in place. Exclusions and the settings', models'
    and study's own fields can change, so their values are read whole (a study has
    few of each; the study's row is the one the caller read).
    """
    items = StudyItem.objects.filter(study=study, kind__in=ANALYSED_ITEM_KINDS)
    item_facts = items.aggregate(count=Count("id"), low=Min("id"), high=Max("id"))
    # The labels of the items' id range, as the report selects them (report/loading.py).
    low, high = item_facts["low"] or 0, item_facts["high"] or -1
    labels = Label.objects.filter(item_id__gte=low, item_id__lte=high).aggregate(
        count=Count("id"), last=Max("id")
    )
    participants = Participant.objects.filter(study=study)
    people = participants.aggregate(count=Count("id"), last=Max("id"))
    excluded = list(participants.filter(excluded=True).order_by("id").values_list("id", flat=True))
    predictions = (
        Prediction.objects.filter(example_id__in=items.values("example_id"))
        .values("model_id")
        .order_by("model_id")
        .annotate(count=Count("id"), last=Max("id"))
    )
    prediction_facts = [(row["model_id"], row["count"], row["last"]) for row in predictions]
    model_ids = [int(row["model_id"]) for row in predictions]
    models = ClassifierModel.objects.filter(pk__in=model_ids).order_by("id").values_list()
    settings = AttackSetting.objects.filter(pk__in=items.values("example__setting_id"))
    facts: list[Any] = [
        [getattr(study, field.attname) for field in Study._meta.concrete_fields],
        item_facts,
        labels,
        people,
        excluded,
        prediction_facts,
        list(models),
        list(settings.order_by("id").values_list()),
    ]
    return hashlib.sha256(repr(facts).encode()).hexdigest()


def _read(key: str, fingerprint: str) -> Any:
    """The value stored under ``key`` with this fingerprint, else None (a miss, an older
    fingerprint, or a cache that failed to answer)."""
    try:
        stored = caches[CACHE_ALIAS].get(key)
    except Exception:  # a cache that is down, or a pickle it cannot read, is a miss
        logger.warning("report cache: %s could not be read", key, exc_info=True)
        return None
    if not isinstance(stored, tuple) or len(stored) != 2 or stored[0] != fingerprint:
        return None
    return stored[1]


def _write(key: str, fingerprint: str, value: Any) -> None:
    try:
        caches[CACHE_ALIAS].set(key, (fingerprint, value), TIMEOUT_S)
    except Exception:  # the page is served all the same; the next view computes again
        logger.warning("report cache: %s could not be written", key, exc_info=True)
