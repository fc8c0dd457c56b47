"""Board sessions through the API and the pages; snapshots and PDF summaries on real slides."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

pytestmark = pytest.mark.django_db


def test_presenter_creates_a_session_through_the_api(client_for, presenter, case):
    from cases.models import Case

    other = Case.objects.create(case_id="CASE-2")
    response = client_for(presenter).post("/api/boards/", {"cases": [other.pk, case.pk], "title": "Tuesday"},
                                          content_type="application/json")
    assert response.status_code == 201, response.content
    data = response.json()
    assert data["id"] > 0 and data["title"] == "Tuesday"
    assert [c["id"] for c in data["cases"]] == [other.pk, case.pk]
    assert data["driver"]["id"] == presenter.pk and data["url"] == f"/boards/{data['id']}/"
    assert data["ws_url"] == f"/ws/board/{data['id']}/" and data["records"] == [] and data["state"] is None
    listed = client_for(presenter).get("/api/boards/").json()
    assert [s["id"] for s in listed] == [data["id"]]
    assert client_for(presenter).get(f"/api/boards/{data['id']}/").json()["cases"] == data["cases"]


def test_only_presenters_and_admins_create(client, client_for, pathologist, admin_user_role, case):
    body = {"cases": [case.pk]}
    assert client.post("/api/boards/", body, content_type="application/json").status_code == 401
    assert client_for(pathologist).post("/api/boards/", body, content_type="application/json").status_code == 403
    assert client_for(pathologist).get("/api/boards/").status_code == 200
    admin = client_for(admin_user_role)
    assert admin.post("/api/boards/", body, content_type="application/json").status_code == 201
    assert admin.post("/api/boards/", {"cases": [case.pk, 987654]}, content_type="application/json").status_code == 400
    assert admin.post("/api/boards/", {"cases": []}, content_type="application/json").status_code == 400


def test_case_page_offers_presenting_only_to_presenters(client_for, presenter, pathologist, case):
    client = client_for(pathologist)
    page = client.get(f"/cases/{case.case_id}/").content.decode()
    assert 'id="board-panel"' in page and "Present at tumour board" not in page
    client = client_for(presenter)
    page = client.get(f"/cases/{case.case_id}/").content.decode()
    assert "Present at tumour board" in page
    response = client.post("/boards/", {"cases": [str(case.pk)], "title": "From the case page"})
    assert response.status_code == 302
    from viewer.board.models import BoardSession

    session = BoardSession.objects.get()
    assert response["Location"] == f"/boards/{session.pk}/" and session.title == "From the case page"
    # The case page now links to the open session.
    assert f"/boards/{session.pk}/" in client_for(pathologist).get(f"/cases/{case.case_id}/").content.decode()


def test_pathologist_cannot_start_from_the_page(client_for, pathologist, case):
    assert client_for(pathologist).post("/boards/", {"cases": [str(case.pk)]}).status_code == 403


def test_presentation_page_reuses_the_paired_viewer(client_for, presenter, pathologist, he_slide, ihc_slide):
    from viewer.board.services import board_create
    from cases.models import Case

    case = he_slide.case
    second = Case.objects.create(case_id="CASE-2")
    session = board_create(user=presenter, cases=[case, second])
    page = client_for(pathologist).get(f"/boards/{session.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    for needle in ('<div id="case-viewer"></div>', 'id="case-viewer-config"', "viewer/case_viewer.css",
                   "vendor/openseadragon/openseadragon.min.js", 'type="module" src="/static/viewer/case_viewer.js"',
                   'src="/static/board/board.js"', 'id="board-config"', "Case 1 of 2", "CASE-2"):
        assert needle in html, needle
    config = page.context["viewer_config"]
    assert [s["id"] for s in config["slides"]] == [he_slide.pk, ihc_slide.pk]
    assert config["alignment"] is None or config["alignment"]["editable"] is False
    board_config = page.context["board_config"]
    assert board_config["caseId"] == case.pk and board_config["driver"] == presenter.pk
    # ?case= picks another playlist case; an unknown one falls back to the first.
    assert client_for(pathologist).get(f"/boards/{session.pk}/?case={second.pk}").context["case"] == second
    assert client_for(pathologist).get(f"/boards/{session.pk}/?case=999").context["case"] == case


def test_anonymous_is_sent_to_login(client, presenter, case):
    from viewer.board.services import board_create

    session = board_create(user=presenter, cases=[case])
    response = client.get(f"/boards/{session.pk}/")
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]
    assert client.get(f"/boards/{session.pk}/records/1/").status_code == 302


def test_snapshot_is_the_region_with_a_caption(client_for, presenter, he_slide, settings):
    from analysis.core.slides.reader import SlideReader
    from viewer.board.services import board_create

    session = board_create(user=presenter, cases=[he_slide.case])
    client = client_for(presenter)
    body = {"slide": he_slide.pk, "x": 400, "y": 600, "width": 1200, "height": 800, "out_width": 600,
            "caption": "Tumour front, 40x", "layers": ["cells"], "hidden": {"cells": ["stroma"]}}
    response = client.post(f"/api/boards/{session.pk}/snapshots/", body, content_type="application/json")
    assert response.status_code == 201, response.content
    record = response.json()
    assert record["kind"] == "snapshot" and record["caption"] == "Tumour front, 40x"
    assert record["viewport"]["out_height"] == 400
    png = client.get(record["url"])
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    image = Image.open(io.BytesIO(b"".join(png.streaming_content))).convert("RGB")
    assert image.width == 600 and image.height > 400 + 30  # the caption strip below the view
    expected = np.asarray(SlideReader(he_slide.file_path).read_scaled(x=400, y=600, width=1200, height=800,
                                                                      out_width=600, out_height=400), dtype=float)
    got = np.asarray(image, dtype=float)[:400]
    # The scale bar sits bottom left; the rest of the view is the slide's pixels.
    assert np.abs(got[:300] - expected[:300]).mean() < 1.0
    strip = np.asarray(image, dtype=float)[410:]
    assert strip.std() > 10, "no caption drawn"
    assert (settings.LADDER_DATA_DIR / "board" / session.key / f"snapshot-{record['id']}.png").is_file()
    listed = client.get(f"/api/boards/{session.pk}/").json()["records"]
    assert [r["id"] for r in listed] == [record["id"]]


def test_snapshot_rejects_bad_requests(client_for, presenter, make_user, he_slide):
    from viewer.board.services import board_create
    from cases.models import Case

    session = board_create(user=presenter, cases=[he_slide.case])
    client = client_for(presenter)
    url = f"/api/boards/{session.pk}/snapshots/"
    base = {"slide": he_slide.pk, "x": 0, "y": 0, "width": 100, "height": 100, "out_width": 100}
    assert client.post(url, {**base, "x": 10 ** 7}, content_type="application/json").status_code == 400
    assert client.post(url, {**base, "out_width": 10 ** 5}, content_type="application/json").status_code == 400
    assert client.post(url, {**base, "slide": 999999}, content_type="application/json").status_code == 404
    off_playlist = Case.objects.create(case_id="OTHER")
    other_session = board_create(user=presenter, cases=[off_playlist])
    assert client.post(f"/api/boards/{other_session.pk}/snapshots/", base,
                       content_type="application/json").status_code == 400
    nobody = client_for(make_user("norole"))
    assert nobody.post(url, base, content_type="application/json").status_code == 403


def test_pdf_summary_of_a_case(client_for, presenter, he_slide, ihc_slide):
    from viewer.board.services import board_create

    session = board_create(user=presenter, cases=[he_slide.case])
    client = client_for(presenter)
    client.post(f"/api/boards/{session.pk}/snapshots/", {"slide": he_slide.pk, "x": 0, "y": 0, "width": 2000,
                "height": 2000, "out_width": 400, "caption": "Overview"}, content_type="application/json")
    response = client.post(f"/api/boards/{session.pk}/summaries/", {"case": he_slide.case.pk},
                           content_type="application/json")
    assert response.status_code == 201, response.content
    record = response.json()
    pdf = b"".join(client.get(record["url"]).streaming_content)
    assert pdf.startswith(b"%PDF") and len(pdf) > 20_000  # two thumbnails and a snapshot embedded
    assert b"/Subtype /Image" in pdf or b"/Subtype/Image" in pdf


def test_pdf_text(he_slide, presenter):
    """The summary says what the board needs: case, score state, reviews and the research-use statement."""
    from viewer.board.render import RESEARCH_STATEMENT, summary_pdf

    pdf = summary_pdf(title="CASE-1 · Board", case={"case_id": "CASE-1", "rows": [("Age", 51)]},
                      score={"status": "scored", "score": 73.2, "risk_group": "High", "probability_pcr": 0.27,
                             "implication": "Escalation candidate", "model": "demo v1",
                             "attributions": [{"feature": "T-T meanEdgeLength", "value": 12.5,
                                               "score_attribution": 4.2}]},
                      thumbnails=[], reviews=None, annotations=None, snapshots=[], made_by="pres1",
                      made_at=__import__("datetime").datetime(2026, 1, 1))
    assert pdf.startswith(b"%PDF")
    text = _pdf_text(pdf)
    for needle in ("CASE-1", "Research use only", "No reviews", "No annotations", "T-T meanEdgeLength",
                   "Escalation candidate", "P(pCR) = 0.27"):
        assert needle in text, needle
    assert RESEARCH_STATEMENT.split(";")[0] in text


def _pdf_text(pdf: bytes) -> str:
    """The text shown by a reportlab PDF: its (compressed) content streams' string operands."""
    import base64
    import re
    import zlib

    out = []
    for stream in re.findall(rb"stream\r?\n(.*?)\s*endstream", pdf, re.S):
        try:  # reportlab: /ASCII85Decode /FlateDecode
            data = zlib.decompress(base64.a85decode(re.sub(rb"\s", b"", stream).removesuffix(b"~>")))
        except Exception:  # noqa: BLE001 - images and fonts
            continue
        out += [m.decode("latin-1").replace("\\(", "(").replace("\\)", ")")
                for m in re.findall(rb"\(((?:[^()\\]|\\.)*)\)\s*Tj", data)]
    return " ".join(out)
