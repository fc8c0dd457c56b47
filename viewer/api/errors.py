"""Not-found answers under /api/ are JSON like every other API answer (a client, and the schema,
expect {"detail": ...}); pages keep Django's HTML 404."""
from __future__ import annotations

from django.http import JsonResponse
from django.views.defaults import page_not_found


def not_found(request, exception=None):
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=404)
    return page_not_found(request, exception)
