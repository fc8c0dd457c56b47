"""Board record rendering: captions draw "–", "µ", "×" and "→" (not the missing-glyph box); a
snapshot shows both panes when both are shown; the PDF has tables of reviews and annotations,
local times to the minute, the comment once, and headings kept with what follows."""
from __future__ import annotations

import datetime as dt
import io
import re

import numpy as np
import pytest
from PIL import Image, ImageDraw

from tests.viewer.board.test_api import _pdf_text
from viewer.board import render


def _glyph(font, text: str) -> np.ndarray:
    image = Image.new("L", (80, 80), 0)
    ImageDraw.Draw(image).text((10, 10), text, fill=255, font=font)
    return np.asarray(image)


def test_a_font_with_the_caption_glyphs_is_found():
    path = render.font_path()
    assert path is not None, "no TrueType font with – µ × → (Debian: fonts-dejavu-core)"
    assert render._has_glyphs(path, "–µ×→")


@pytest.mark.parametrize("glyph", ["–", "µ", "×", "→"])
def test_caption_glyphs_are_not_the_missing_glyph_box(glyph):
    font = render._font(32)
    missing = _glyph(font, "\U000E01EF")  # a code point no text font has: its .notdef box
    drawn = _glyph(font, glyph)
    assert drawn.any(), f"{glyph!r} draws nothing"
    assert not np.array_equal(drawn, missing), f"{glyph!r} is drawn as the missing-glyph box"


def test_snapshot_caption_with_those_glyphs_differs_from_boxes():
    view = Image.new("RGB", (400, 200), (255, 255, 255))
    out = render.caption_below(view, caption="T2 N1 – 20 µm × 2", subtitle="")
    boxes = render.caption_below(view, caption="T2 N1 \U000E01EF 20 \U000E01EFm \U000E01EF 2", subtitle="")
    assert np.asarray(out).shape == np.asarray(boxes).shape
    assert np.abs(np.asarray(out, dtype=int) - np.asarray(boxes, dtype=int)).sum() > 0


@pytest.mark.django_db
def test_snapshot_of_both_panes(client_for, presenter, he_slide, ihc_slide):
    from analysis.core.slides.reader import SlideReader
    from viewer.board.services import board_create

    session = board_create(user=presenter, cases=[he_slide.case])
    client = client_for(presenter)
    body = {"slide": he_slide.pk, "x": 400, "y": 600, "width": 1200, "height": 800, "out_width": 300,
            "caption": "Both panes",
            "panes": [{"slide": ihc_slide.pk, "x": 0, "y": 0, "width": 1000, "height": 1000, "out_width": 250}]}
    response = client.post(f"/api/boards/{session.pk}/snapshots/", body, content_type="application/json")
    assert response.status_code == 201, response.content
    record = response.json()
    assert [p["slide"] for p in record["viewport"]["panes"]] == [he_slide.pk, ihc_slide.pk]
    image = Image.open(io.BytesIO(b"".join(client.get(record["url"]).streaming_content))).convert("RGB")
    assert image.width == 300 + 6 + 250 and image.height > 250 + 30
    got = np.asarray(image, dtype=float)
    right = np.asarray(SlideReader(ihc_slide.file_path).read_scaled(x=0, y=0, width=1000, height=1000,
                                                                    out_width=250, out_height=250), dtype=float)
    # the IHC pane sits right of the H&E (below its label, above its scale bar)
    assert np.abs(got[60:180, 306:556] - right[60:180]).mean() < 1.0
    left = np.asarray(SlideReader(he_slide.file_path).read_scaled(x=400, y=600, width=1200, height=800,
                                                                  out_width=300, out_height=200), dtype=float)
    assert np.abs(got[50:150, :300] - left[50:150]).mean() < 1.0
    bad = {**body, "panes": [{**body["panes"][0], "slide": 999999}]}
    assert client.post(f"/api/boards/{session.pk}/snapshots/", bad, content_type="application/json").status_code == 404


def _summary(reviews, annotations, rows=None):
    return render.summary_pdf(
        title="CASE-1 · Board", case={"case_id": "CASE-1", "rows": rows or [("Age", 51)]},
        score={"status": "scored", "score": 73.2, "risk_group": "High", "probability_pcr": 0.27,
               "implication": "Escalation candidate", "model": "demo v1",
               "attributions": [{"feature": "he_T_L_meanEdgeLength", "label_text": "H&E: mean edge length (um)",
                                 "display_value": "12.5", "value": 12.5, "score_attribution": 4.2}]},
        thumbnails=[], reviews=reviews, annotations=annotations, snapshots=[], made_by="pres1",
        made_at=dt.datetime(2026, 1, 1, 9, 30, tzinfo=dt.timezone.utc))


REVIEW = {"reviewer": "path1", "call": "disagrees with Low", "risk_group": "High", "expected": "Residual disease",
          "her2": "2+ / auto 3+", "ish": "Amplified", "confidence": "4/5", "status": "submitted, disagrees", "saved": "2026-01-01 09:12",
          "comment": "Front of invasion looks different"}
ANNOTATION = {"slide": "H&E", "label": "Tumour", "shape": "Polygon", "author": "path1",
              "comment": "Check this region", "updated": "2026-01-01 09:14"}


def test_pdf_reviews_and_annotations_are_tables():
    text = _pdf_text(_summary([REVIEW], [ANNOTATION]))
    for header in ("Reviewer", "Risk group call", "Expects", "ISH", "Saved", "Slide", "Label", "Shape", "Last change"):
        assert header in text, header
    assert text.count("Front of invasion looks different") == 1  # the comment once
    assert "2026-01-01 09:12" in text and "Amplified" in text and "Check this region" in text
    assert "mean edge length (um)" in text  # the plain name, not he_T_L_meanEdgeLength


def _page_texts(pdf: bytes) -> list[list[str]]:
    import base64
    import zlib

    pages = []
    for stream in re.findall(rb"stream\r?\n(.*?)\s*endstream", pdf, re.S):
        try:
            data = zlib.decompress(base64.a85decode(re.sub(rb"\s", b"", stream).removesuffix(b"~>")))
        except Exception:  # noqa: BLE001
            continue
        found = [m.decode("latin-1") for m in re.findall(rb"\(((?:[^()\\]|\\.)*)\)\s*Tj", data)]
        if found:
            pages.append(found)
    return pages


@pytest.mark.parametrize("filler", range(28, 60, 3))
def test_headings_are_never_the_last_thing_on_a_page(filler):
    rows = [(f"Item {i}", "value") for i in range(filler)]
    pdf = _summary([REVIEW] * 3, [ANNOTATION] * 4, rows=rows)
    pages = _page_texts(pdf)
    assert len(pages) >= 2
    for page in pages[:-1]:
        assert page[-1] not in {"HER2-LADDER score", "Reviews", "Annotations", "Slides", "Clinical summary"}, page[-3:]


@pytest.mark.django_db
def test_summary_times_are_local_to_the_minute(client_for, presenter, he_slide, settings):
    from viewer.board.services import _review_items, board_create
    from viewer.review.models import Annotation, AnnotationLabel, Review

    settings.TIME_ZONE = "Europe/Berlin"
    Review.objects.create(case=he_slide.case, reviewer=presenter, agrees=False, comment="once", submitted=True)
    Annotation.objects.create(slide=he_slide, author=presenter, label=AnnotationLabel.objects.first(),
                              shape="point", geometry={"type": "Point", "coordinates": [1, 2]}, comment="here")
    reviews, annotations = _review_items(he_slide.case)
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d", reviews[0]["saved"])
    review = Review.objects.get(case=he_slide.case)
    from zoneinfo import ZoneInfo

    assert reviews[0]["saved"] == f"{review.updated_at.astimezone(ZoneInfo('Europe/Berlin')):%Y-%m-%d %H:%M}"
    assert annotations[0]["comment"] == "here" and annotations[0]["shape"] == "Point"
    session = board_create(user=presenter, cases=[he_slide.case])
    response = client_for(presenter).post(f"/api/boards/{session.pk}/summaries/", {"case": he_slide.case.pk},
                                          content_type="application/json")
    assert response.status_code == 201
    pdf = b"".join(client_for(presenter).get(response.json()["url"]).streaming_content)
    text = _pdf_text(pdf)
    assert text.count("once") == 1 and "+00:00" not in text and not re.search(r"\d\d:\d\d:\d\d\.\d", text)


@pytest.mark.django_db
def test_summary_title_names_the_case_once(client_for, presenter, he_slide):
    """A board started from the case page is titled "Tumour board · <case>": the PDF's title named
    the case twice ("CASE-1 · Tumour board · CASE-1"). The title names it once; the board is named below."""
    from viewer.board.services import board_create

    case = he_slide.case
    session = board_create(user=presenter, cases=[case], title=f"Tumour board · {case.case_id}")
    client = client_for(presenter)
    response = client.post(f"/api/boards/{session.pk}/summaries/", {"case": case.pk}, content_type="application/json")
    assert response.status_code == 201, response.content
    pdf = b"".join(client.get(response.json()["url"]).streaming_content)
    first_page = _page_texts(pdf)[0]
    assert f"Case summary: {case.case_id}" in first_page, first_page[:3]
    assert all(text.count(case.case_id) <= 1 for text in first_page), first_page[:5]
    # (the subset font codes "·" as \\001 in the content stream)
    assert re.search(rf"Board record of Tumour board \S+ {case.case_id}, made by {presenter.get_username()} on ",
                     " ".join(first_page))
    info_title = re.search(rb"/Title \((.*?)\)", pdf).group(1).decode("latin-1")
    assert info_title == f"Case summary: {case.case_id}"
