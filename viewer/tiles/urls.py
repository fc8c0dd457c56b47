"""Slide pixel routes (DZI, JPEG tiles, thumbnail); included at the site root by config/urls.py.

Answered by the ASGI fast path (viewer.tiles.asgi) in the server; these views serve the same
URLs elsewhere (test client) and give reverse() its names."""
from django.urls import path

from viewer.tiles import views

urlpatterns = [
    path("slides/<int:slide_id>.dzi", views.slide_dzi, name="slide-dzi"),
    path("slides/<int:slide_id>_files/<int:level>/<int:col>_<int:row>.jpeg", views.slide_tile, name="slide-tile"),
    path("slides/<int:slide_id>/thumbnail.jpg", views.slide_thumbnail, name="slide-thumbnail"),
]
