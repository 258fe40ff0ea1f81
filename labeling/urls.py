from django.urls import path

from labeling import views

urlpatterns = [
    path("<str:join_token>/", views.join, name="join"),
    path("<str:join_token>/label/", views.label, name="label"),
    path("<str:join_token>/image/<uuid:assignment_id>/", views.image, name="annotator-image"),
    path("<str:join_token>/done/", views.done, name="done"),
]
