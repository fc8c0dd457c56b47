"""Overlay routes (tiles, viewport records, cell inspector, feature sources); included at the site root."""
from django.urls import path

from viewer import overlay_views

urlpatterns = [
    path("api/slides/<int:slide_id>/overlays/<slug:name>/viewport", overlay_views.OverlayViewportView.as_view(),
         name="api-overlay-viewport"),
    path("api/slides/<int:slide_id>/cells/<int:cell_id>/", overlay_views.CellDetailView.as_view(),
         name="api-cell-detail"),
    path("api/features/<str:name>/", overlay_views.FeatureSourceView.as_view(), name="api-feature-source"),
    # Pixels: answered by the ASGI fast path (viewer.tile_app) in the server.
    path("slides/<int:slide_id>/overlays/<slug:name>.dzi", overlay_views.overlay_dzi, name="overlay-dzi"),
    path("slides/<int:slide_id>/overlays/<slug:name>_files/<int:level>/<int:col>_<int:row>.png",
         overlay_views.overlay_tile, name="overlay-tile"),
]
