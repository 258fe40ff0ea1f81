from django.urls import path

from labeling import api, preview, views

urlpatterns = [
    # Before the join token's patterns: "preview" is never a token (tokens are 22 characters).
    path("preview/<int:study_id>/", preview.study_preview, name="study-preview"),
    path("<str:join_token>/", views.join, name="join"),
    path("<str:join_token>/consent/", views.consent, name="consent"),
    path("<str:join_token>/declined/", views.declined, name="declined"),
    path("<str:join_token>/instructions/", views.instructions, name="instructions"),
    path("<str:join_token>/label/", views.label, name="label"),
    path("<str:join_token>/done/", views.done, name="done"),
    path("<str:join_token>/image/<uuid:assignment_id>/", views.image, name="annotator-image"),
    path("<str:join_token>/example.png", views.example_image, name="annotator-example-image"),
    path("<str:join_token>/api/next", api.api_next, name="annotator-api-next"),
    path("<str:join_token>/api/labels", api.api_labels, name="annotator-api-labels"),
]
