"""Pages of cases: worklist, case page, slide upload, mpp, analysis requests."""
from django.urls import path

from viewer.cases import views

urlpatterns = [
    path("", views.worklist, name="worklist"),
    path("cases/new/", views.case_create_view, name="case-create"),
    path("cases/<str:case_id>/edit/", views.case_edit_view, name="case-edit"),
    path("cases/<str:case_id>/", views.case_detail, name="case-detail"),
    path("cases/<str:case_id>/upload/", views.slide_upload_view, name="slide-upload"),
    path("slides/<int:slide_id>/mpp/", views.slide_mpp_view, name="slide-mpp"),
    path("slides/<int:slide_id>/analyze/", views.slide_analyze_view, name="slide-analyze"),
]
