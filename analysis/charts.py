"""The dashboard's charts, drawn on the server, and the numbers behind each as a table.

Figures are built with matplotlib's object API (``matplotlib.figure.Figure``),
never pyplot: pyplot keeps a global current figure, which two requests drawing
at once in one process would share. Each chart has a table (its numbers, for
CSV), and the figure is drawn from that table, so the two cannot disagree.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from analysis.report import GroupReport, PsychometricFamily, StudyReport
from config.spreadsheets import text_cell

Cell = str | int | float | None
FORMATS = {"svg": "image/svg+xml", "png": "image/png", "csv": "text/csv"}


@dataclass(frozen=True)
class ChartTable:
    header: tuple[str, ...]
    rows: tuple[tuple[Cell, ...], ...]


def _number(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) else value


def _rate_rows(summary: GroupReport) -> Iterable[tuple[Cell, ...]]:
    for measure, share in (
        ("changed", summary.changed),
        ("target_reached", summary.target_reached),
    ):
        low, high = share.interval
        yield (
            summary.setting.name,
            measure,
            share.successes,
            share.trials,
            share.value,
            _number(low),
            _number(high),
        )


def rates_table(report: StudyReport) -> ChartTable:
    """Per setting, the share of examples whose majority changed and reached the target."""
    header = ("setting", "measure", "successes", "trials", "share", "wilson_low", "wilson_high")
    rows = [row for setting in report.settings for row in _rate_rows(setting.summary)]
    return ChartTable(header, tuple(rows))


def agreement_table(report: StudyReport) -> ChartTable:
    """Per setting and model, agreement with the human majority and both bootstrap intervals."""
    header = (
        "setting",
        "model",
        "hits",
        "judged",
        "agreement",
        "examples_low",
        "examples_high",
        "participants_low",
        "participants_high",
    )
    rows = []
    for setting in report.settings:
        for row in setting.summary.models:
            agreement = row.agreement
            rows.append(
                (
                    setting.setting.name,
                    row.model.name,
                    agreement.hits,
                    agreement.judged,
                    agreement.value,
                    *(_number(end) for end in agreement.by_examples),
                    *(_number(end) for end in agreement.by_participants),
                )
            )
    return ChartTable(header, tuple(rows))


def psychometric_table(report: StudyReport) -> ChartTable:
    """Per family and eps level, the labels that changed, and the family's fitted curve."""
    header = (
        "family",
        "setting",
        "eps",
        "changed",
        "labels",
        "share",
        "wilson_low",
        "wilson_high",
        "intercept",
        "slope",
        "eps50",
        "eps50_low",
        "eps50_high",
    )
    rows = []
    for family in report.families:
        fit = family.fit
        curve: tuple[Cell, ...] = (None,) * 5
        if fit is not None:
            low, high = fit.midpoint_interval
            curve = (fit.intercept, fit.slope, fit.midpoint, _number(low), _number(high))
        for point in family.points:
            share = point.changed
            rows.append(
                (
                    family.title,
                    point.setting.name,
                    point.eps,
                    share.successes,
                    share.trials,
                    share.value,
                    *(_number(end) for end in share.interval),
                    *curve,
                )
            )
    return ChartTable(header, tuple(rows))


def annotators_table(report: StudyReport) -> ChartTable:
    """Every participant with analysed labels, least reliable first (no chart: a long table)."""
    header = ("participant", "pseudonym", "labels", "excluded", "quality", "agree", "judged")
    rows = tuple(
        (
            row.participant_id,
            row.pseudonym,
            row.labels,
            row.excluded,
            row.quality,
            row.agreement_with_majority.successes,
            row.agreement_with_majority.trials,
        )
        for row in report.annotators
    )
    return ChartTable(header, rows)


def table_csv(table: ChartTable) -> str:
    """CSV with full-precision numbers (repr), empty cells where a measure is undefined,
    and no name a spreadsheet would run as a formula."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(table.header)
    for row in table.rows:
        writer.writerow([_csv_cell(cell) for cell in row])
    return buffer.getvalue()


def _csv_cell(cell: Cell) -> Cell:
    if cell is None:
        return ""
    return text_cell(cell) if isinstance(cell, str) else cell


# ---- figures ----


def _empty(figure: Figure, words: str) -> Figure:
    axes = figure.add_subplot()
    axes.set_axis_off()
    axes.text(0.5, 0.5, words, ha="center", va="center", color="#555555")
    return figure


def _error_bars(values: list[float], lows: list[float], highs: list[float]) -> np.ndarray:
    """Distances below and above each value, 0 where an end is undefined."""
    value, low, high = (np.array(column, dtype=float) for column in (values, lows, highs))
    return np.nan_to_num(np.stack([value - low, high - value]), nan=0.0).clip(min=0)


def _column(rows: list[tuple[Cell, ...]], index: int) -> list[float]:
    return [math.nan if row[index] is None else float(row[index] or 0) for row in rows]


def _grouped_points(axes: Axes, table: ChartTable, columns: tuple[int, int, int, int, int]) -> None:
    """A marker and its interval per (category, series), the series side by side.

    ``columns``: where the category, series, value, low and high sit in a row.
    """
    key, series, value, low, high = columns
    categories = list(dict.fromkeys(str(row[key]) for row in table.rows))
    names = list(dict.fromkeys(str(row[series]) for row in table.rows))
    width = 0.7 / len(names)
    for offset, name in enumerate(names):
        rows = [row for row in table.rows if str(row[series]) == name and row[value] is not None]
        shift = (offset - (len(names) - 1) / 2) * width
        place = [categories.index(str(row[key])) + shift for row in rows]
        values, lows, highs = (_column(rows, index) for index in (value, low, high))
        bars = _error_bars(values, lows, highs)
        axes.errorbar(place, values, yerr=bars, fmt="o", capsize=3, label=name)
    axes.set_xticks(range(len(categories)), categories)
    axes.tick_params(axis="x", labelrotation=30)
    axes.set_ylim(-0.02, 1.02)
    axes.grid(axis="y", color="#dddddd")
    axes.legend(loc="best", fontsize="small")


_NO_RATES = "No labels yet for the change rates: no example has a majority label."
_NO_AGREEMENT = (
    "No labels yet for the models' agreement: no model predicts an example with a majority label."
)


def rates_figure(report: StudyReport) -> Figure:
    return _points_figure(
        rates_table(report),
        _NO_RATES,
        "share of examples with a majority",
        "Human majority changed / reached the target (Wilson 95%)",
    )


def agreement_figure(report: StudyReport) -> Figure:
    return _points_figure(
        agreement_table(report),
        _NO_AGREEMENT,
        "agreement with the human majority",
        "Model vs human majority (bootstrap over examples, 95%)",
    )


def _points_figure(table: ChartTable, empty: str, ylabel: str, title: str) -> Figure:
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    if not _has_points(table):
        return _empty(figure, empty)
    axes = figure.add_subplot()
    _grouped_points(axes, table, (0, 1, 4, 5, 6))
    axes.set_ylabel(ylabel)
    axes.set_title(title)
    return figure


def _draw_family(axes: Axes, family: PsychometricFamily) -> None:
    eps = [point.eps for point in family.points]
    shares = [math.nan if p.changed.value is None else p.changed.value for p in family.points]
    lows = [point.changed.interval.low for point in family.points]
    highs = [point.changed.interval.high for point in family.points]
    bars = _error_bars(shares, lows, highs)
    axes.errorbar(eps, shares, yerr=bars, fmt="o", capsize=3, label="humans")
    right = max(eps) * 1.15
    title = family.title
    if family.fit is not None:
        _draw_fit(axes, family, right)
        if not 0 <= family.fit.midpoint <= right:
            title += f"\n50% point {family.fit.midpoint:.3g}: outside the eps tested"
    else:
        title += f"\nno fit: {family.reason}"
    axes.set_xlim(0, right)
    axes.set_ylim(-0.02, 1.02)
    axes.set_title(title, fontsize="small", wrap=True)
    axes.set_xlabel("eps")
    axes.set_ylabel("share of labels that changed")
    axes.legend(loc="best", fontsize="x-small")


def _draw_fit(axes: Axes, family: PsychometricFamily, right: float) -> None:
    """The logistic curve, its 50% point and that point's Fieller interval, within [0, right]."""
    assert family.fit is not None
    grid = np.linspace(0, right, 200)
    axes.plot(grid, [family.curve(float(level)) or 0.0 for level in grid], label="logistic fit")
    midpoint = family.fit.midpoint
    if 0 <= midpoint <= right:
        axes.axvline(midpoint, color="#888888", linestyle="--", label="50% point")
    low, high = family.fit.midpoint_interval
    if math.isfinite(low) and math.isfinite(high) and high >= 0 and low <= right:
        axes.axvspan(
            max(low, 0), min(high, right), color="#cccccc", alpha=0.4, label="its 95% interval"
        )


def _labelled(family: PsychometricFamily) -> bool:
    return any(point.changed.trials for point in family.points)


def psychometric_figure(report: StudyReport) -> Figure:
    """A panel per family with labels; a family without any is named in words instead
    (``chart_notes``), not drawn as empty axes."""
    families = [family for family in report.families if _labelled(family)]
    columns = min(len(families), 2) or 1
    rows = max(math.ceil(len(families) / columns), 1)
    figure = Figure(figsize=(4.5 * columns, 3.8 * rows), layout="constrained")
    if not families:
        return _empty(figure, " ".join(_psychometric_notes(report)))
    for index, family in enumerate(families):
        _draw_family(figure.add_subplot(rows, columns, index + 1), family)
    return figure


CHART_TABLES: dict[str, Callable[[StudyReport], ChartTable]] = {
    "rates": rates_table,
    "agreement": agreement_table,
    "psychometric": psychometric_table,
    "annotators": annotators_table,
}
CHART_FIGURES: dict[str, Callable[[StudyReport], Figure]] = {
    "rates": rates_figure,
    "agreement": agreement_figure,
    "psychometric": psychometric_figure,
}


def _has_points(table: ChartTable) -> bool:
    return any(row[4] is not None for row in table.rows)  # the share or agreement


def _psychometric_notes(report: StudyReport) -> tuple[str, ...]:
    if not report.families:
        return ("No psychometric curve: no settings of this study differ only in eps.",)
    return tuple(
        f"No labels yet for {family.title}." for family in report.families if not _labelled(family)
    )


def chart_notes(name: str, report: StudyReport) -> tuple[str, ...]:
    """Sentences for what the chart leaves out for want of data (all of it where it has none)."""
    if name == "psychometric":
        return _psychometric_notes(report)
    empty = {"rates": (rates_table, _NO_RATES), "agreement": (agreement_table, _NO_AGREEMENT)}
    table, sentence = empty[name]
    return () if _has_points(table(report)) else (sentence,)


def chart_has_data(name: str, report: StudyReport) -> bool:
    if name == "psychometric":
        return any(_labelled(family) for family in report.families)
    return not chart_notes(name, report)


@dataclass(frozen=True)
class ChartPanel:
    """A chart as the dashboard shows it: drawn (its image is fetched from its own URL, so
    the page waits for no chart) or not, for want of data, and sentences on what is missing."""

    name: str
    drawn: bool
    notes: tuple[str, ...]


def dashboard_panels(report: StudyReport) -> tuple[ChartPanel, ...]:
    """Every chart of the dashboard, drawn only where it has data."""
    return tuple(
        ChartPanel(name, chart_has_data(name, report), chart_notes(name, report))
        for name in CHART_FIGURES
    )


def figure_bytes(figure: Figure, image_format: str) -> bytes:
    """The figure as SVG or PNG, without the date and software in its metadata."""
    buffer = io.BytesIO()
    metadata = {"Date": None} if image_format == "svg" else {"Software": None}
    figure.savefig(buffer, format=image_format, dpi=120, metadata=metadata)
    return buffer.getvalue()
