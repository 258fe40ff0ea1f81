"""study_report on a study labelled through the real services, against hand counts and libraries.

The study (tests/analysis/report_study.py) has two settings of four examples,
three participants who label everything, and the third one excluded. Every
count below is read off PLAN; the coefficients are checked against statsmodels,
krippendorff and crowd-kit on the same labels, read back through the ORM.
"""

from __future__ import annotations

import krippendorff
import numpy as np
import pandas as pd
import pytest
from crowdkit.aggregation import DawidSkene
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa
from statsmodels.stats.proportion import proportion_confint

from analysis.report import study_report
from analysis.report.loading import locate
from analysis.statistics import (
    FLEISS_KAPPA,
    KRIPPENDORFF_ALPHA,
    bootstrap_examples,
    bootstrap_participants,
    dawid_skene,
    fit_psychometric,
    majority_share_statistic,
)
from attacks import services
from attacks.models import AttackSetting
from labeling.models import Label
from study.design import SettingSample
from study.services import create_study
from tests.analysis.report_study import PLAN, HandStudy, build_hand_study
from tests.attacks.test_imports import import_tramer

CANT_TELL = 10  # the category of "none / can't tell" with MNIST's ten classes


@pytest.fixture
def hand(researcher) -> HandStudy:
    return build_hand_study(researcher)


def labels_of(hand: HandStudy, *, include_excluded: bool) -> list[tuple[str, int, int]]:
    """(example name, participant id, category) of every analysed label, through the ORM."""
    names = {example.pk: name for name, example in hand.examples.items()}
    labels = Label.objects.filter(item__study=hand.study).select_related("item", "participant")
    if not include_excluded:
        labels = labels.filter(participant__excluded=False)
    return [
        (
            names[label.item.example_id],
            label.participant_id,
            CANT_TELL if label.value == -1 else label.value,
        )
        for label in labels
    ]


def count_table(labels, names: list[str]) -> np.ndarray:
    table = np.zeros((len(names), CANT_TELL + 1), dtype=int)
    for name, _, category in labels:
        if name in names:
            table[names.index(name), category] += 1
    return table


def test_the_third_participant_is_excluded_by_the_studys_own_rule(hand: HandStudy) -> None:
    excluded = [participant.excluded for participant in hand.participants]
    assert excluded == [False, False, True]
    assert "faster than" in hand.participants[2].exclusion_reasons[0]


def test_counts_majorities_and_shares_by_hand_with_every_participant(hand: HandStudy) -> None:
    report = study_report(hand.study, include_excluded=True, bootstrap_replicates=200)

    first, second = (setting.summary for setting in report.settings)
    assert [first.setting.name, second.setting.name] == ["pgd-0.1", "pgd-0.3"]
    assert (first.counts.labels, first.counts.examples, first.counts.participants) == (12, 4, 3)
    assert (first.majorities.with_majority, first.majorities.ties) == (3, 1)  # a4 ties
    assert (first.changed.successes, first.changed.trials) == (0, 3)
    assert (
        first.robust_accuracy_upper_bound.successes,
        first.robust_accuracy_upper_bound.trials,
    ) == (3, 3)
    # b1 and b3 reach the target; b2's majority is 4; b4's is "can't tell", which differs too.
    assert (second.majorities.with_majority, second.majorities.ties) == (4, 0)
    assert second.majorities.cant_tell == 1
    assert (second.changed.successes, second.changed.trials) == (4, 4)
    assert (second.target_reached.successes, second.target_reached.trials) == (2, 4)
    assert second.robust_accuracy_upper_bound.value == 0.0
    # Labels per category in setting a: 1 x5, 2 x3, 3, 5, 7 and one "can't tell".
    expected = [0, 5, 3, 1, 0, 1, 0, 1, 0, 0, 1]
    assert list(first.distribution) == expected
    assert len(report.categories) == 11
    assert report.categories[-1] == "None / can't tell"


def test_excluded_participants_are_left_out_unless_asked(hand: HandStudy) -> None:
    report = study_report(hand.study, bootstrap_replicates=200)

    first, second = (setting.summary for setting in report.settings)
    assert (first.counts.labels, first.counts.participants) == (8, 2)
    # Without the third participant a3 ([2, 3]) and a4 ([2, 5]) tie, and so does b4 ([2, X]).
    assert (first.majorities.with_majority, first.majorities.ties) == (2, 2)
    assert (second.majorities.with_majority, second.majorities.ties) == (3, 1)
    assert (second.target_reached.successes, second.target_reached.trials) == (2, 3)
    assert [row.excluded for row in report.annotators] == [False, False]


def test_source_class_rows_split_the_setting(hand: HandStudy) -> None:
    report = study_report(hand.study, include_excluded=True, bootstrap_replicates=200)

    classes = report.settings[1].classes
    assert [row.source_class for row in classes] == [1, 2]
    ones, twos = classes
    assert (ones.counts.examples, ones.changed.successes, ones.target_reached.successes) == (
        2,
        2,
        1,
    )
    assert (twos.counts.examples, twos.changed.successes, twos.target_reached.successes) == (
        2,
        2,
        1,
    )
    assert sum(row.counts.labels for row in classes) == report.settings[1].summary.counts.labels


def test_model_agreement_error_consistency_and_robust_accuracy_by_hand(hand: HandStudy) -> None:
    report = study_report(hand.study, include_excluded=True, bootstrap_replicates=200)

    first, second = (setting.summary for setting in report.settings)
    by_name = {row.model.name: row for row in first.models}
    assert (by_name["attacked"].agreement.hits, by_name["attacked"].agreement.judged) == (1, 3)
    assert (by_name["robust"].agreement.hits, by_name["robust"].agreement.judged) == (3, 3)
    by_name = {row.model.name: row for row in second.models}
    assert (by_name["attacked"].agreement.hits, by_name["attacked"].agreement.judged) == (2, 4)
    assert by_name["robust"].agreement.value == 0.0
    # Robust accuracy against human labels is the setting's target model's agreement.
    assert second.robust_accuracy is not None
    assert second.robust_accuracy.model.name == "attacked"
    assert second.robust_accuracy.agreement.value == 0.5
    overall = {row.model.name: row for row in report.models}
    # Against the source label, the attacked model is right on a1, b2, b4 and the humans on
    # a1, a2, a3: c_obs = 3/7, c_exp = (3/7)^2 + (4/7)^2 = 25/49, kappa = -4/24.
    assert overall["attacked"].error_consistency.value == pytest.approx(-1 / 6)
    # The robust model is always right: c_obs = c_exp = 3/7, kappa = 0.
    assert overall["robust"].error_consistency.value == pytest.approx(0.0)
    assert (overall["attacked"].agreement.hits, overall["attacked"].agreement.judged) == (3, 7)


def test_shares_carry_statsmodels_wilson_intervals(hand: HandStudy) -> None:
    report = study_report(hand.study, include_excluded=True, bootstrap_replicates=200)

    target = report.settings[1].summary.target_reached
    low, high = proportion_confint(2, 4, method="wilson")
    assert target.interval == pytest.approx((low, high))


def test_kappa_and_alpha_equal_statsmodels_and_krippendorff(hand: HandStudy) -> None:
    report = study_report(hand.study, include_excluded=True, bootstrap_replicates=200)
    labels = labels_of(hand, include_excluded=True)

    for prefix, setting in zip("ab", report.settings, strict=True):
        names = [f"{prefix}{n}" for n in range(1, 5)]
        table = count_table(labels, names)
        assert setting.summary.fleiss_kappa.value == pytest.approx(
            statsmodels_fleiss_kappa(table, method="fleiss")
        )
        participants = sorted({participant for _, participant, _ in labels})
        data = np.full((len(participants), len(names)), np.nan)
        for name, participant, category in labels:
            if name in names:
                data[participants.index(participant), names.index(name)] = category
        assert setting.summary.krippendorff_alpha.value == pytest.approx(
            krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
        )


def test_undefined_coefficients_say_why(hand: HandStudy) -> None:
    report = study_report(hand.study, bootstrap_replicates=200)

    # Source class 1 of setting a without the third participant: a1 [1, 1], a2 [1, 1].
    ones = report.settings[0].classes[0]
    assert ones.fleiss_kappa.value is None
    assert ones.fleiss_kappa.reason == "every label is in one category"
    assert ones.krippendorff_alpha.reason == "only one category is ever used"
    # The robust model and the majorities of a1 and a2 are right about the source label.
    robust = next(row for row in report.settings[0].summary.models if row.model.name == "robust")
    assert robust.error_consistency.value is None
    assert robust.error_consistency.reason.startswith("model and humans are both always right")
    assert np.isnan(ones.fleiss_kappa.interval.low)


def test_bootstrap_intervals_equal_the_statistics_functions_with_the_same_seed(
    hand: HandStudy,
) -> None:
    report = study_report(hand.study, include_excluded=True, bootstrap_replicates=300, seed=5)
    labels = labels_of(hand, include_excluded=True)
    names = [f"a{n}" for n in range(1, 5)]  # setting a, in the report's order (source, id)

    kappa = bootstrap_examples(FLEISS_KAPPA, count_table(labels, names), n_replicates=300, rng=5)
    assert report.settings[0].summary.fleiss_kappa.interval == pytest.approx(kappa, nan_ok=True)
    alpha = bootstrap_examples(
        KRIPPENDORFF_ALPHA, count_table(labels, names), n_replicates=300, rng=5
    )
    assert report.settings[0].summary.krippendorff_alpha.interval == pytest.approx(
        alpha, nan_ok=True
    )
    # Participants: over the whole study, the attacked model's agreement.
    every = sorted(PLAN)
    predictions = np.array(
        [
            {"a1": 1, "a2": 7, "a3": 3, "a4": 2, "b1": 7, "b2": 1, "b3": 3, "b4": 2}[name]
            for name in every
        ]
    )
    expected = bootstrap_participants(
        majority_share_statistic(predictions, equal=True),
        [every.index(name) for name, _, _ in labels],
        [participant for _, participant, _ in labels],
        [category for _, _, category in labels],
        len(every),
        CANT_TELL + 1,
        n_replicates=300,
        rng=5,
    )
    attacked = next(row for row in report.models if row.model.name == "attacked")
    assert attacked.agreement.by_participants == pytest.approx(expected)
    assert report.bootstrap.participants == 300
    assert report.bootstrap.note is None


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::FutureWarning")
def test_dawid_skene_equals_crowdkit_and_quality_equals_the_statistics_function(
    hand: HandStudy,
) -> None:
    report = study_report(hand.study, include_excluded=True, bootstrap_replicates=100)
    labels = labels_of(hand, include_excluded=True)

    frame = pd.DataFrame(labels, columns=["task", "worker", "label"])
    expected = DawidSkene(n_iter=100, tol=1e-5).fit(frame).probas_
    for name, example in hand.examples.items():
        ours = report.dawid_skene.posterior(example.pk)
        assert ours is not None
        for category in expected.columns:
            assert ours[category] == pytest.approx(expected.loc[name, category], abs=1e-6)
    every = sorted(PLAN)
    workers = sorted({worker for _, worker, _ in labels})
    fit = dawid_skene(
        [every.index(name) for name, _, _ in labels],
        [workers.index(worker) for _, worker, _ in labels],
        [category for _, _, category in labels],
        len(every),
        len(workers),
        CANT_TELL + 1,
    )
    quality = {row.participant_id: row.quality for row in report.annotators}
    assert [quality[worker] for worker in workers] == pytest.approx(fit.quality.tolist())


def test_annotators_are_pseudonymised_and_scored_against_the_majority(hand: HandStudy) -> None:
    report = study_report(hand.study, include_excluded=True, bootstrap_replicates=100)

    rows = {row.participant_id: row for row in report.annotators}
    first, _, third = hand.participants
    assert rows[third.pk].excluded
    assert rows[third.pk].labels == 8
    assert str(first.public_id) not in rows[first.pk].pseudonym
    # Participant 0 agrees with the majority on a1 a2 a3 b1 b2 b3 (b4's majority is "can't tell").
    assert (
        rows[first.pk].agreement_with_majority.successes,
        rows[first.pk].agreement_with_majority.trials,
    ) == (6, 7)


def test_psychometric_family_of_the_two_eps_levels(hand: HandStudy) -> None:
    report = study_report(hand.study, include_excluded=True, bootstrap_replicates=100)

    (family,) = report.families
    assert [point.eps for point in family.points] == [0.1, 0.3]
    # Labels that differ from the source: 4 of 12 at eps 0.1, 10 of 12 at eps 0.3.
    assert [(p.changed.successes, p.changed.trials) for p in family.points] == [(4, 12), (10, 12)]
    expected = fit_psychometric([0.1, 0.3], [4, 10], [12, 12])
    assert family.fit == expected
    # Two levels: the logistic passes through both rates.
    assert family.curve(0.1) == pytest.approx(4 / 12)
    assert family.curve(0.3) == pytest.approx(10 / 12)


def test_response_times_per_setting(hand: HandStudy) -> None:
    report = study_report(hand.study, include_excluded=True, bootstrap_replicates=100)

    times = [setting.summary.response_times for setting in report.settings]
    # Per setting 4 answers at 800 ms, 4 at 801 and 4 at 802, but for the third
    # participant's last answer (10 ms, the only one below the study's 250 ms).
    assert [summary.count for summary in times] == [12, 12]
    assert [summary.median for summary in times] == [801.0, 801.0]
    fast = [round((summary.share_below or 0.0) * 12) for summary in times]
    assert sorted(fast) == [0, 1]
    assert report.settings[0].classes[0].response_times is None  # per setting only


@pytest.mark.parametrize("spread", [1, 10_000_000])  # a table by id; a binary search
def test_locate_finds_the_items_among_ids_of_other_studies(spread: int) -> None:
    item_ids = np.array([30, 10, 20]) * spread
    wanted = np.array([20, 5, 30, 25, 10, 31]) * spread

    found, place = locate(item_ids, wanted)

    assert found.tolist() == [True, False, True, False, True, False]
    assert place[found].tolist() == [2, 0, 1]


def test_the_report_reads_the_database_in_six_queries(
    hand: HandStudy, django_assert_num_queries
) -> None:
    # Items, participants, labels and predictions (through analysis.reading), settings,
    # models; inside the test's own transaction, which is the snapshot.
    with django_assert_num_queries(6):
        study_report(hand.study, bootstrap_replicates=100)


def test_tramers_three_linf_sets_make_no_curve_until_two_are_named_one_family(
    tmp_path, researcher, researcher_client
) -> None:
    # Given Tramèr et al.'s automated eps 0.3 and 0.4 sets and their manual eps 0.4 set,
    # imported without a family, in one study
    names = ("auto-0.3", "auto-0.4", "manual-0.4")
    imported = {name: import_tramer(tmp_path, name) for name in names}
    study = create_study(
        owner=researcher,
        title="Tramèr et al. 2020, L-inf",
        instructions="Which digit is this?",
        samples=[SettingSample(setting, 10) for setting in imported.values()],
        controls=None,
        items_per_participant=10,
        labels_per_item=1,
    )

    # Then the two methods are not fitted as one curve: no family at all
    assert study_report(study, bootstrap_replicates=100).families == ()

    # When the researcher names the automated sets one family
    for name in ("auto-0.3", "auto-0.4"):
        services.set_setting_family(imported[name], "tramer-automated", by=researcher)

    # Then they, and only they, are one family, on the report and its page
    (family,) = study_report(study, bootstrap_replicates=100).families
    assert [(point.setting.name, point.eps) for point in family.points] == [
        ("auto-0.3", 0.3),
        ("auto-0.4", 0.4),
    ]
    title = "tramer-automated (imported, mnist, linf): auto-0.3 to auto-0.4"
    assert family.title == title
    assert list(AttackSetting.objects.order_by("name").values_list("family", flat=True)) == [
        "tramer-automated",
        "tramer-automated",
        "",
    ]
    page = researcher_client.get(f"/researcher/studies/{study.pk}/analysis/")
    assert page.status_code == 200
    assert page.content.decode().count('<table class="family"') == 1
    assert f'data-family="{title}"' in page.content.decode()
