from django.urls import path

from labeling import api, preview, views
from labeling.framing import framable_by_mturk as framable

# Every annotator page may be framed by MTurk (labeling/framing.py); the preview may not.
urlpatterns = [
    # Before the join token's patterns: "preview" is never a token (tokens are 22 characters).
    path("preview/<int:study_id>/", preview.study_preview, name="study-preview"),
    path("<str:join_token>/", framable(views.join), name="join"),
    path("<str:join_token>/consent/", framable(views.consent), name="consent"),
    path("<str:join_token>/declined/", framable(views.declined), name="declined"),
    path("<str:join_token>/instructions/", framable(views.instructions), name="instructions"),
    path("<str:join_token>/label/", framable(views.label), name="label"),
    path("<str:join_token>/done/", framable(views.done), name="done"),
    path("<str:join_token>/withdraw/", framable(views.withdraw), name="withdraw"),
    path(
        "<str:join_token>/image/<uuid:assignment_id>/",
        framable(views.image),
        name="annotator-image",
    ),
    path(
        "<str:join_token>/example.png",
        framable(views.example_image),
        name="annotator-example-image",
    ),
    path("<str:join_token>/api/next", framable(api.api_next), name="annotator-api-next"),
    path("<str:join_token>/api/labels", framable(api.api_labels), name="annotator-api-labels"),
]
