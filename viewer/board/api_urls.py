"""API routes of this app (included under /api/ by config/urls.py)."""
from django.urls import path  # noqa: F401

urlpatterns: list = []
