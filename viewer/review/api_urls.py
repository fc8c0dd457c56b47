"""API routes of this app (included under /api/ by config/urls.py)."""
from django.urls import path

from viewer.review import api

urlpatterns = [
    path("slides/<int:slide_id>/annotations/", api.slide_annotations, name="api-slide-annotations"),
    path("slides/<int:slide_id>/annotations.geojson", api.slide_annotations_geojson,
         name="api-slide-annotations-geojson"),
    path("slides/<int:slide_id>/annotations/import/", api.slide_annotations_import,
         name="api-slide-annotations-import"),
    path("annotations/<int:pk>/", api.annotation_detail, name="api-annotation-detail"),
    path("annotations/<int:pk>/statistics/", api.annotation_statistics, name="api-annotation-statistics"),
    path("annotations/<int:pk>/history/", api.annotation_history, name="api-annotation-history"),
    path("annotations/<int:pk>/revert/", api.annotation_revert, name="api-annotation-revert"),
    path("annotations/<int:pk>/transfer/", api.annotation_transfer, name="api-annotation-transfer"),
    path("annotation-labels/", api.annotation_label_list, name="api-annotation-labels"),
    path("cases/<int:pk>/reviews/", api.case_review_list, name="api-case-reviews"),
    path("cases/<int:pk>/reviews/mine/", api.case_review_mine, name="api-case-review-mine"),
]
