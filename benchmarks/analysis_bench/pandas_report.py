"""The study report computed the usual way, with pandas and the field's libraries.

This is the yardstick for ``analysis.report.study_report``: what a researcher would
write with the exported data in a notebook. The labels are read from PostgreSQL with
COPY into pandas (the fastest way into a DataFrame; from SQLite, ``pandas.read_sql``),
then, per setting: vote counts, majorities with ties, the shares of changed and
target majorities, each model's agreement with the majority, Fleiss' kappa
(statsmodels, over examples with the full k labels, as it needs), Krippendorff's
alpha (krippendorff, nominal, from the vote counts) and median response times; each
annotator's agreement with the majority; and crowd-kit's Dawid-Skene over the whole
study. It does less than study_report (no bootstrap intervals, no per-class groups, no
psychometric fits), so the comparison favours it.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable
from typing import Any

import krippendorff
import numpy as np
import pandas as pd
from crowdkit.aggregation import DawidSkene
from statsmodels.stats.inter_rater import fleiss_kappa

LABELS_SQL = """
    SELECT l.participant_id AS worker, i.example_id AS task, e.setting_id, e.source_label,
           e.target_label, l.value AS label, l.client_response_ms, l.server_response_ms
    FROM labeling_label l
    JOIN study_studyitem i ON i.id = l.item_id
    JOIN attacks_example e ON e.id = i.example_id
    JOIN labeling_participant p ON p.id = l.participant_id
    WHERE i.study_id = {study_id} AND i.kind IN ('main', 'control') {excluded}
"""
PREDICTIONS_SQL = """
    SELECT pr.example_id AS task, pr.model_id, pr.label
    FROM attacks_prediction pr JOIN study_studyitem i ON i.example_id = pr.example_id
    WHERE i.study_id = {study_id} AND i.kind IN ('main', 'control')
"""


Reader = Callable[[str], pd.DataFrame]


def postgresql_reader(cursor: Any) -> Reader:
    """Frames through COPY on a psycopg2 cursor."""

    def read(sql: str) -> pd.DataFrame:
        buffer = io.StringIO()
        cursor.copy_expert(f"COPY ({sql}) TO STDOUT WITH (FORMAT csv, HEADER)", buffer)
        buffer.seek(0)
        return pd.read_csv(buffer)

    return read


def sqlite_reader(connection: Any) -> Reader:
    """Frames from a sqlite3 connection."""
    return lambda sql: pd.read_sql_query(sql, connection)


def pandas_report(read: Reader, study_id: int, include_excluded: bool = False) -> dict[str, Any]:
    """Returns the measures and the seconds spent loading and computing them."""
    started = time.perf_counter()
    excluded = "" if include_excluded else "AND NOT p.excluded"
    labels = read(LABELS_SQL.format(study_id=int(study_id), excluded=excluded))
    predictions = read(PREDICTIONS_SQL.format(study_id=int(study_id)))
    loaded = time.perf_counter()
    examples = per_example(labels)
    settings = {
        int(setting_id): per_setting(group, labels[labels["setting_id"] == setting_id], predictions)
        for setting_id, group in examples.groupby("setting_id")
    }
    annotators = per_annotator(labels, examples)
    counted = time.perf_counter()
    posteriors = DawidSkene(n_iter=100, tol=1e-5).fit_predict_proba(
        labels[["task", "worker", "label"]]
    )
    finished = time.perf_counter()
    return {
        "settings": settings,
        "annotators": annotators,
        "dawid_skene_examples": len(posteriors),
        "seconds": {
            "load": loaded - started,
            "counts and agreement": counted - loaded,
            "dawid_skene": finished - counted,
            "total": finished - started,
        },
    }


def per_example(labels: pd.DataFrame) -> pd.DataFrame:
    counts = labels.groupby(["task", "label"]).size().unstack(fill_value=0)
    top = counts.max(axis=1)
    tied = counts.eq(top, axis=0).sum(axis=1) > 1
    facts = labels.groupby("task")[["setting_id", "source_label", "target_label"]].first()
    return facts.assign(
        n=counts.sum(axis=1),
        majority=counts.idxmax(axis=1).where(~tied),
        tie=tied,
        counts=list(counts.to_numpy()),
    )


def per_setting(
    examples: pd.DataFrame, labels: pd.DataFrame, predictions: pd.DataFrame
) -> dict[str, Any]:
    decided = examples[examples["majority"].notna()]
    counts = np.stack(examples["counts"].to_numpy())
    full = counts[counts.sum(axis=1) == counts.sum(axis=1).max()]
    models = predictions[predictions["task"].isin(decided.index)].merge(
        decided[["majority"]], left_on="task", right_index=True
    )
    agreement = (models["label"] == models["majority"]).groupby(models["model_id"]).mean()
    return {
        "examples": len(examples),
        "labels": int(examples["n"].sum()),
        "ties": int(examples["tie"].sum()),
        "changed": float((decided["majority"] != decided["source_label"]).mean()),
        "target": float((decided["majority"] == decided["target_label"]).mean()),
        "models": agreement.to_dict(),
        "fleiss_kappa": float(fleiss_kappa(full)),
        "krippendorff_alpha": float(
            krippendorff.alpha(value_counts=counts, level_of_measurement="nominal")
        ),
        "median_client_ms": float(labels["client_response_ms"].median()),
        "median_server_ms": float(labels["server_response_ms"].median()),
    }


def per_annotator(labels: pd.DataFrame, examples: pd.DataFrame) -> pd.Series:
    majority = labels["task"].map(examples["majority"])
    agrees = (labels["label"] == majority).where(majority.notna())
    return agrees.groupby(labels["worker"]).mean()
