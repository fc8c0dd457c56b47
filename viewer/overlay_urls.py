"""Overlay routes (tiles, viewport records, cell inspector, feature sources); included at the site root."""
from django.urls import path  # noqa: F401

urlpatterns: list = []
