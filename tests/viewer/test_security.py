"""CSRF, uploads, traversal on pixel URLs, security headers."""
from __future__ import annotations

from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse

from tests.viewer.test_access import all_urls
from cases.models import Slide


@pytest.fixture
def csrf_client(pathologist):
    client = Client(enforce_csrf_checks=True)
    client.force_login(pathologist)
    return client


UNSAFE = ("post", "put", "patch", "delete")


@pytest.mark.django_db
@pytest.mark.parametrize("url", [u for u in all_urls() if not u.startswith("/admin/") and u != "/accounts/login/"])
def test_csrf_required_on_every_unsafe_method(csrf_client, url, he_slide):
    """A logged-in browser session without the CSRF token changes nothing anywhere."""
    url = url.replace("/1/", f"/{he_slide.pk}/").replace("CASE-1", he_slide.case.case_id)
    for method in UNSAFE:
        response = getattr(csrf_client, method)(url, data={}, content_type="application/json")
        assert response.status_code in (403, 404, 405), f"{method.upper()} {url} -> {response.status_code}"


@pytest.mark.django_db
def test_tile_urls_do_not_traverse(client_for, pathologist, he_slide):
    client = client_for(pathologist)
    for url in (f"/slides/{he_slide.pk}_files/../../etc/passwd", f"/slides/{he_slide.pk}_files/0/..%2F..%2Fsecret.jpeg",
                f"/slides/{he_slide.pk}_files/-1/0_0.jpeg", "/slides/..%2F1.dzi", f"/slides/{he_slide.pk}%2F..%2F.dzi"):
        assert client.get(url).status_code == 404, url


@pytest.mark.django_db
def test_non_slide_upload_is_refused_and_removed(client_for, pathologist, case, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    client = client_for(pathologist)
    fake = SimpleUploadedFile("report.svs", b"%PDF-1.4 this is not a slide" * 100, content_type="application/pdf")
    response = client.post("/api/slides/", {"case": case.pk, "stain": "he", "file": fake})
    assert response.status_code == 400 and "damaged or truncated" in response.json()["detail"]
    script = SimpleUploadedFile("evil.html", b"<script>alert(1)</script>", content_type="text/html")
    response = client.post("/api/slides/", {"case": case.pk, "stain": "he", "file": script})
    assert response.status_code == 400 and "not a whole-slide format" in response.json()["detail"]
    assert not Slide.objects.exists()
    uploads = settings.LADDER_UPLOAD_DIR / "uploads"
    assert not uploads.exists() or not any(uploads.rglob("*.*"))


@pytest.mark.django_db
def test_oversized_upload_is_refused(client_for, pathologist, case, settings):
    from django.core.files.uploadedfile import SimpleUploadedFile

    settings.LADDER_MAX_UPLOAD_MB = 1
    big = SimpleUploadedFile("big.svs", b"\0" * (1024 * 1024 + 1))
    response = client_for(pathologist).post("/api/slides/", {"case": case.pk, "stain": "he", "file": big})
    assert response.status_code == 400 and "upload limit" in response.json()["detail"]


@pytest.mark.django_db
def test_upload_through_the_page_imports_a_real_slide(client_for, pathologist, case, shared_file):
    with open(shared_file("slides/CMU-1-Small-Region.svs"), "rb") as handle:
        response = client_for(pathologist).post(reverse("slide-upload", args=[case.case_id]),
                                                {"file": handle, "stain": "he"}, follow=True)
    assert response.status_code == 200 and b"Imported CMU-1-Small-Region.svs" in response.content
    assert Slide.objects.get(case=case).vendor == "aperio"


@pytest.mark.django_db
def test_security_headers(client_for, pathologist, case):
    response = client_for(pathologist).get(f"/cases/{case.case_id}/")
    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "cdn" not in csp.lower()
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.django_db
def test_long_multibyte_upload_name_is_stored_under_a_short_name(client_for, pathologist, case, shared_file, settings):
    """Issue 15, defect 7: a 200-character multi-byte name (600 bytes in UTF-8) used to give 500
    (ENAMETOOLONG) and leave an empty folder; the name is now data, the file has a short name."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    name = "Präparat-" + "ü" * 187 + ".svs"
    assert len(name) >= 200 and len(name.encode()) > 255
    data = shared_file("slides/CMU-1-Small-Region.svs").read_bytes()
    client = client_for(pathologist)
    response = client.post("/api/slides/", {"case": case.pk, "stain": "he",
                                            "file": SimpleUploadedFile(name, data)})
    assert response.status_code == 201, response.content
    slide = Slide.objects.get()
    assert slide.name == name
    stored = Path(slide.file_path)
    assert stored.name == "slide.svs" and stored.parent.parent == settings.LADDER_UPLOAD_DIR / "uploads"
    # a refused upload with such a name: a 400 naming it, and no folder left behind
    before = set((settings.LADDER_UPLOAD_DIR / "uploads").iterdir())
    response = client.post("/api/slides/", {"case": case.pk, "stain": "he",
                                            "file": SimpleUploadedFile("ü" * 200 + ".svs", b"not a slide" * 50)})
    assert response.status_code == 400 and "ü" * 200 in response.json()["detail"]
    assert set((settings.LADDER_UPLOAD_DIR / "uploads").iterdir()) == before
