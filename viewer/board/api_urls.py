"""API routes of this app (included under /api/ by config/urls.py)."""
from django.urls import path

from viewer.board import api

urlpatterns: list = [
    path("boards/", api.BoardListView.as_view(), name="api-board-list"),
    path("boards/<int:pk>/", api.BoardDetailView.as_view(), name="api-board-detail"),
    path("boards/<int:pk>/end/", api.BoardEndView.as_view(), name="api-board-end"),
    path("boards/<int:pk>/snapshots/", api.BoardSnapshotView.as_view(), name="api-board-snapshots"),
    path("boards/<int:pk>/summaries/", api.BoardSummaryView.as_view(), name="api-board-summaries"),
]
