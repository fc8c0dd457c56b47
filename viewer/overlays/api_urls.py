"""API routes of overlays (included under /api/ by viewer/api/urls.py)."""
from django.urls import path

from viewer.overlays import api

urlpatterns = [
    path("slides/<int:slide_id>/overlays/<slug:name>/viewport", api.OverlayViewportView.as_view(),
         name="api-overlay-viewport"),
    path("slides/<int:slide_id>/overlays/<slug:name>/contours", api.OverlayContoursView.as_view(),
         name="api-overlay-contours"),
    path("slides/<int:slide_id>/cells/<int:cell_id>/", api.CellDetailView.as_view(), name="api-cell-detail"),
    path("features/<str:name>/", api.FeatureSourceView.as_view(), name="api-feature-source"),
]
