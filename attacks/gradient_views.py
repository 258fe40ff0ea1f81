"""A model's loss gradients beside test images, for its page (attacks/engine/gradients.py)."""

from __future__ import annotations

from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.views.decorators.http import require_GET

from attacks.datasets import configured_dataset
from attacks.engine.gradients import gradient_figure
from attacks.model_loading import load_stored_classifier
from attacks.models import JobStatus
from attacks.queries import model_for
from config.auth import researcher_required


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
    figure = gradient_figure(load_stored_classifier(model), data)
    response = HttpResponse(figure, content_type="image/png")
    # The weights never change under a model's id, and the test images are fixed.
    response["Cache-Control"] = "private, max-age=86400"
    return response


def _plain(sentence: str) -> HttpResponse:
    return HttpResponse(sentence, status=404, content_type="text/plain; charset=utf-8")
