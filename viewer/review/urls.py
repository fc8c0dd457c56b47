"""Page routes of this app (included at the site root by config/urls.py)."""
from django.urls import path

from viewer.review import views

urlpatterns = [
    path("review/disagreements/", views.disagreement_queue, name="review-disagreements"),
    path("review/disagreements.csv", views.disagreements_csv, name="review-disagreements-csv"),
    path("audit/", views.audit_log, name="audit-log"),
]
