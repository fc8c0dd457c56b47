"""Pages of the review app: disagreement queue (+ CSV export) and the admin audit log."""
from __future__ import annotations

from urllib.parse import urlencode

from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone

from viewer.review import selectors
from cases.roles import user_is_admin


def disagreement_queue(request):
    query = request.GET.get("q", "").strip()
    reviews = selectors.disagreement_reviews(query=query)
    rows = []
    for review in reviews:
        case = review.case
        rows.append({"review": review, "case": case, "he": case.slide_for("he"), "ihc": case.slide_for("ihc")})
    return render(request, "review/disagreements.html", {"rows": rows, "query": query})


def disagreements_csv(request):
    reviews = selectors.disagreement_reviews(query=request.GET.get("q", "").strip())
    response = HttpResponse(selectors.disagreements_csv(reviews), content_type="text/csv; charset=utf-8")
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = f'attachment; filename="disagreements-{stamp}.csv"'
    return response


def audit_log(request):
    if not user_is_admin(request.user):
        raise PermissionDenied("The audit log is for admins.")
    filters = {key: request.GET.get(key, "").strip() for key in ("action", "user", "case", "date_from", "date_to")}
    events = selectors.audit_events(**filters)
    page = Paginator(events, 100).get_page(request.GET.get("page"))
    query = urlencode({k: v for k, v in filters.items() if v})
    return render(request, "review/audit.html", {"page": page, "filters": filters, "query": query,
                                                 **selectors.audit_filter_choices()})
