"""Overlay pixel routes (DZI, PNG tiles); included at the site root by config/urls.py."""
from django.urls import path

from viewer.overlays import views

urlpatterns = [
    # Pixels: answered by the ASGI fast path (viewer.tiles.asgi) in the server.
    path("slides/<int:slide_id>/overlays/<slug:name>.dzi", views.overlay_dzi, name="overlay-dzi"),
    path("slides/<int:slide_id>/overlays/<slug:name>_files/<int:level>/<int:col>_<int:row>.png",
         views.overlay_tile, name="overlay-tile"),
]
