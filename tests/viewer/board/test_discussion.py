"""The board shows a case's reviews and open annotations behind a toggle, each annotation with
the box the presenter jumps to and the geometry outlined there."""
from __future__ import annotations

import json
import re

import pytest

pytestmark = pytest.mark.django_db


def test_board_page_lists_reviews_and_annotations(client_for, presenter, pathologist, he_slide):
    from viewer.board.services import board_create
    from viewer.review.models import Annotation, AnnotationLabel, Review

    Review.objects.create(case=he_slide.case, reviewer=pathologist, agrees=False, risk_group="High",
                          comment="stroma-rich front", submitted=True, is_disagreement=True, model_risk_group="Low")
    label = AnnotationLabel.objects.get(name="missed tumour region")
    kept = Annotation.objects.create(slide=he_slide, author=pathologist, label=label, shape="polygon",
                                     geometry={"type": "Polygon", "coordinates": [[[100, 200], [500, 200], [500, 900],
                                                                                   [100, 200]]]}, comment="look here")
    Annotation.objects.create(slide=he_slide, author=pathologist, label=label, shape="point", deleted=True,
                              geometry={"type": "Point", "coordinates": [5, 5]})
    session = board_create(user=presenter, cases=[he_slide.case])
    html = client_for(presenter).get(f"/boards/{session.pk}/").content.decode()
    assert 'id="board-discussion-toggle"' in html and 'aria-expanded="false"' in html
    assert "stroma-rich front" in html and "thinks <strong>High</strong>" in html and "1 disagreement" in html
    assert f'data-annotation="{kept.pk}"' in html and "look here" in html and "1 review, 1 open annotation" in html
    config = json.loads(re.search(r'<script id="board-config" type="application/json">(.*?)</script>', html,
                                  re.S).group(1))
    assert config["annotations"] == [{
        "id": kept.pk, "slide": he_slide.pk, "stain": "he", "stain_label": "H&E", "label": "missed tumour region",
        "color": label.color, "shape": "Polygon", "author": pathologist.username, "comment": "look here",
        "bbox": [100.0, 200.0, 500.0, 900.0], "geometry": kept.geometry}]  # the geometry: outlined on its slide
    # the comment is part of the annotation's card, not a line after it
    card = re.search(rf'<li class="board-annotation-card" data-annotation="{kept.pk}".*?</li>', html, re.S).group(0)
    assert "look here" in card
