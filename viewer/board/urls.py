"""Page routes of this app (included at the site root by config/urls.py)."""
from django.urls import path

from viewer.board import views

urlpatterns: list = [
    path("boards/", views.board_list, name="board-list"),
    path("boards/<int:pk>/", views.board_detail, name="board-detail"),
    path("boards/<int:pk>/records/<int:record_pk>/", views.board_record_file, name="board-record-file"),
]
