"""Generation jobs: provenance, idempotent re-runs, measures taken on the stored image."""

import hashlib

import pytest
import torch
from django.core.exceptions import ValidationError

from attacks import jobs, services, tasks
from attacks.engine.architectures import predict
from attacks.engine.datasets import load_dataset
from attacks.engine.images import decode_png
from attacks.models import AttackSetting, Example, GenerationJob, JobStatus, Prediction
from tests.fixtures import clean_mnist_setting


def make_setting(model, name: str = "pgd", seed: int = 3) -> AttackSetting:
    return services.create_attack_setting(
        name=name,
        attack_name="pgd_linf",
        config={"eps": 0.3, "steps": 10},
        dataset="mnist",
        source_split="test",
        source_range=(9000, 10000),
        seed=seed,
        target_model=model,
    )


def run_job(setting: AttackSetting, count: int, chunk_size: int = 4) -> GenerationJob:
    job = services.create_generation_job(setting, count, chunk_size=chunk_size)
    tasks.run_generation_job(job.pk)  # in-process here; the end-to-end test uses the worker
    job.refresh_from_db()
    return job


def test_job_stores_examples_with_measures_taken_on_the_stored_png(trained_model) -> None:
    setting = make_setting(trained_model)

    job = run_job(setting, 6)

    assert job.status == JobStatus.SUCCEEDED
    assert job.done == 6
    assert job.code_version
    assert job.worker_host
    assert job.device == "cpu"
    assert setting.config["restarts"] == 1  # the full config, defaults included, is stored
    source = load_dataset("mnist", "test")
    network = jobs.load_classifier(trained_model, torch.device("cpu"))
    for example in Example.objects.filter(setting=setting):
        stored = decode_png(example.image.read())
        clean = source.images[example.source_index]
        assert example.source_label == int(source.labels[example.source_index])
        assert example.linf_distance == pytest.approx(
            (stored.float() - clean.float()).abs().max() / 255
        )
        assert example.linf_distance is not None
        assert example.linf_distance <= 0.3
        assert hashlib.sha256(example.image.open("rb").read()).hexdigest() == example.image_sha256
        prediction = Prediction.objects.get(example=example, model=trained_model)
        assert prediction.label == int(predict(network, stored[None].float() / 255)[0])


def test_rerunning_a_job_writes_no_duplicate(trained_model) -> None:
    setting = make_setting(trained_model)
    job = run_job(setting, 6)
    # A worker died after the last chunk and the broker redelivered the task.
    GenerationJob.objects.filter(pk=job.pk).update(status=JobStatus.RUNNING)
    Example.objects.filter(job=job, position__gte=4).delete()

    tasks.run_generation_job(job.pk)

    job.refresh_from_db()
    assert job.status == JobStatus.SUCCEEDED
    assert job.done == 6
    assert sorted(Example.objects.filter(job=job).values_list("position", flat=True)) == list(
        range(6)
    )


def test_same_seed_gives_the_same_bytes_and_other_seeds_other_sources(trained_model) -> None:
    first, second = make_setting(trained_model, "a"), make_setting(trained_model, "b")
    other = make_setting(trained_model, "c", seed=4)
    for setting in (first, second, other):
        run_job(setting, 5)

    def digests(setting):
        return list(setting.examples.order_by("position").values_list("image_sha256", flat=True))

    assert digests(first) == digests(second)
    assert digests(first) != digests(other)


def test_second_job_continues_after_the_first(trained_model) -> None:
    setting = make_setting(trained_model)
    run_job(setting, 3)
    second = run_job(setting, 2)
    assert second.offset == 3
    assert setting.examples.count() == 5
    assert len(set(setting.examples.values_list("source_index", flat=True))) == 5


def test_job_for_more_sources_than_the_setting_has_is_refused(trained_model) -> None:
    setting = make_setting(trained_model)
    with pytest.raises(ValidationError, match="1,000 unused source images"):
        services.create_generation_job(setting, 1001)
    assert not GenerationJob.objects.exists()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"source_range": (9000, 20000)}, "inside mnist/test"),
        ({"attack_name": "nope"}, 'There is no attack "nope"'),
        ({"config": {"eps": "big"}}, 'PGD \\(L∞\\): eps must be a number, not "big"'),
        ({"target_model": None}, "needs a target model"),
    ],
)
def test_bad_settings_are_refused_and_nothing_is_stored(trained_model, changes, message) -> None:
    arguments = dict(
        name="bad",
        attack_name="pgd_linf",
        config={"eps": 0.3},
        dataset="mnist",
        source_split="test",
        source_range=(9000, 10000),
        seed=0,
        target_model=trained_model,
    )
    arguments.update(changes)
    with pytest.raises(ValidationError, match=message):
        services.create_attack_setting(**arguments)
    assert not AttackSetting.objects.exists()


def test_neighbour_pool_may_not_contain_the_sources(db) -> None:
    with pytest.raises(ValidationError, match="overlaps the source images"):
        services.create_attack_setting(
            name="leaky",
            attack_name="nn_invariance_linf",
            config={"pool_split": "test", "pool_start": 0, "pool_stop": 9500},
            dataset="mnist",
            source_split="test",
            source_range=(9000, 10000),
            seed=0,
        )


def test_invariance_and_clean_jobs_record_targets_only_where_they_exist(trained_model) -> None:
    invariance = services.create_attack_setting(
        name="nn",
        attack_name="nn_invariance_linf",
        config={"pool_split": "test", "pool_start": 0, "pool_stop": 3000},
        dataset="mnist",
        source_split="test",
        source_range=(9000, 10000),
        seed=0,
    )
    clean = clean_mnist_setting("clean")
    run_job(invariance, 3)
    run_job(clean, 3)

    assert all(e.target_label is not None for e in invariance.examples.all())
    assert all(e.target_label is None and e.l0_distance == 0 for e in clean.examples.all())
    assert Prediction.objects.filter(example__setting=invariance, model=trained_model).count() == 3
