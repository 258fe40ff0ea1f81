"""Loss gradients beside test images (Tsipras et al., fig. 2), on a model's page."""

from __future__ import annotations

import io

import pytest
import torch
from django.test import Client
from django.urls import reverse
from PIL import Image

from attacks.engine.datasets import load_dataset
from attacks.engine.gradients import loss_gradients
from attacks.engine.zoo import load_zoo_model, zoo_entries
from attacks.models import ClassifierModel


def _share_near_the_digit(model_name: str) -> float:
    """The share of the gradient's mass within one pixel of the digit's ink, on 200 images."""
    data = load_dataset("mnist", "test")
    images, labels = data.as_float(slice(0, 200)), data.labels[:200]
    magnitude = loss_gradients(load_zoo_model(model_name), images, labels).abs().flatten(1)
    ink = (images > 0.1).float()
    near_ink = torch.nn.functional.max_pool2d(ink, 3, stride=1, padding=1).flatten(1)
    return float(((magnitude * near_ink).sum(1) / magnitude.sum(1).clamp_min(1e-12)).mean())


def _zoo_model(recipe: str) -> str:
    return next(e["name"] for e in zoo_entries() if e["training"]["config"]["recipe"] == recipe)


def test_a_robust_models_gradients_follow_the_digit_and_a_standard_ones_do_not() -> None:
    assert _share_near_the_digit(_zoo_model("fgsm_rs")) > 0.9
    assert _share_near_the_digit(_zoo_model("standard")) < 0.8


@pytest.mark.django_db
def test_the_model_page_shows_its_gradient_figure_to_whoever_may_see_it(
    researcher, researcher_client: Client, outsider, trained_model: ClassifierModel
) -> None:
    model = trained_model
    ClassifierModel.objects.filter(pk=model.pk).update(created_by=researcher)
    figure_url = reverse("model-gradients", args=[model.pk])

    page = researcher_client.get(reverse("model-detail", args=[model.pk]))
    response = researcher_client.get(figure_url)

    assert figure_url in page.content.decode()
    assert response.status_code == 200
    assert response["Content-Type"] == "image/png"
    figure = Image.open(io.BytesIO(response.content))
    assert figure.size == (8 * 28 * 4, 2 * 28 * 4)  # eight classes; image above gradient
    stranger = Client()
    stranger.force_login(outsider)
    assert stranger.get(figure_url).status_code == 404
