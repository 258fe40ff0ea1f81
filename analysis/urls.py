from django.urls import path

from analysis import views

urlpatterns = [
    path("studies/<int:study_id>/analysis/", views.study_analysis, name="study-analysis"),
]
