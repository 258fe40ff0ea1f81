"""A model's loss gradients beside test images, for its page (attacks/engine/gradients.py)."""

from __future__ import annotations

import logging

from django.core.cache import caches
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from attacks.datasets import configured_dataset
from attacks.engine.gradients import gradient_figure
from attacks.model_loading import load_stored_classifier
from attacks.models import JobStatus
from attacks.queries import model_for
from config.auth import researcher_required

logger = logging.getLogger(__name__)
# config/settings.py's cache for computed figures and reports (Redis, else this process).
FIGURE_CACHE = "reports"


@researcher_required
@require_GET
def model_gradients(request: HttpRequest, model_id: int) -> HttpResponse:
    model = model_for(request.user, model_id)
    if model.status != JobStatus.SUCCEEDED:
        return _plain("This model has no weights yet: its gradients show once it is trained.")
    try:
        data = configured_dataset(model.dataset, "test")
    except ValidationError as error:
        return _plain(error.messages[0])
    # The weights never change under their SHA-256, nor the dataset's test images: the
    # figure is drawn once, then read from the cache (the researcher pages send no-store).
    key = f"advstudy:gradients:{model.weights_sha256}:{model.dataset}"
    figure = caches[FIGURE_CACHE].get(key)
    if figure is None:
        try:
            figure = gradient_figure(load_stored_classifier(model), data)
        except Exception:  # a registered model may fail in ways of its own: say so, no 500
            logger.warning("gradient figure of model %s failed", model.pk, exc_info=True)
            return _plain("This model's gradients could not be computed on its test images.")
        caches[FIGURE_CACHE].set(key, figure, None)
    return HttpResponse(figure, content_type="image/png")


def _plain(sentence: str) -> HttpResponse:
    return HttpResponse(sentence, status=404, content_type="text/plain; charset=utf-8")
