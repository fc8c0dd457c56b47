"""Annotations carried across a case's slide pair through its registration (issue 17).

An annotation on the H&E is mapped onto the IHC (or back) through the case's alignment: the
similarity, and the non-rigid field while the automatic registration applies
(`analysis.registration.alignment_transform`). Polygon edges are densified first so that the
mapped outline follows the field (`analysis.core.slides.registration.map_polygon`).

The copy is an ordinary annotation on the other slide, marked `source="transferred"` with
`transferred_from` and how it was mapped, so everything computed for a region of that slide
(region statistics included) comes from that slide's own cells.
"""
from __future__ import annotations

import numpy as np
from django.core.exceptions import ValidationError
from django.utils import timezone

from analysis.core.slides.registration import map_points_fixed_to_moving, map_points_moving_to_fixed, map_polygon
from analysis.registration import FieldIntegrityError, alignment_transform
from cases.models import Slide, SlideAlignment
from viewer.review.models import Annotation, Shape
from viewer.review.services import MAX_VERTICES, annotation_create


class TransferConflict(Exception):
    def __init__(self, message: str, *, existing: Annotation):
        super().__init__(message)
        self.existing = existing


def _pair(annotation: Annotation) -> tuple[SlideAlignment, Slide, bool]:
    """The alignment the annotation's slide belongs to, the other slide, and the direction."""
    slide = annotation.slide
    alignment = (SlideAlignment.objects.filter(case_id=slide.case_id, fixed=slide).select_related("moving").first()
                 or SlideAlignment.objects.filter(case_id=slide.case_id, moving=slide).select_related("fixed").first())
    if alignment is None:
        raise ValidationError("this slide has no paired slide in its case (one H&E and one IHC are needed)")
    to_moving = alignment.fixed_id == slide.pk
    return alignment, (alignment.moving if to_moving else alignment.fixed), to_moving


def annotation_map(annotation: Annotation) -> dict:
    """Where the annotation lies on the paired slide: {slide, geometry, shape, transfer} (nothing saved)."""
    if annotation.deleted:
        raise ValidationError("a deleted annotation cannot be carried across")
    alignment, target, to_moving = _pair(annotation)
    try:
        similarity, field = alignment_transform(alignment)
    except FieldIntegrityError as exc:
        raise ValidationError(str(exc)) from exc
    geometry = annotation.geometry
    shape = annotation.shape
    if geometry.get("type") == "Point":
        mapper = map_points_fixed_to_moving if to_moving else map_points_moving_to_fixed
        x, y = mapper(points=np.array([geometry["coordinates"][:2]], float), similarity=similarity, field=field)[0]
        mapped = {"type": "Point", "coordinates": [round(float(x), 3), round(float(y), 3)]}
    else:
        total = sum(len(ring) for ring in geometry["coordinates"])
        perimeter = sum(float(np.hypot(*np.diff(np.asarray(ring, float), axis=0).T).sum())
                        for ring in geometry["coordinates"])
        step = None
        if field is not None:  # densify to half the grid spacing, within the vertex limit
            step = max(field.spacing_px / 2, perimeter / max(MAX_VERTICES - total - 10, 1))
        rings = []
        for ring in geometry["coordinates"]:
            points = np.asarray(ring, float)[:-1]  # closed ring: drop the repeated first vertex
            out = map_polygon(polygon=points, similarity=similarity, field=field, to_moving=to_moving,
                              max_segment_px=step)
            coords = [[round(float(x), 3), round(float(y), 3)] for x, y in out]
            rings.append(coords + [coords[0]])
        mapped = {"type": "Polygon", "coordinates": rings}
        if shape == Shape.RECTANGLE and (field is not None or abs(similarity.rotation % 90) > 1e-6):
            shape = Shape.POLYGON  # a turned or warped rectangle is no longer axis-aligned
    transfer = {
        "from_slide": annotation.slide_id, "from_stain": annotation.slide.stain, "to_slide": target.pk,
        "alignment": alignment.source, "nonrigid": field is not None,
        "field_checksum": alignment.field_checksum if field is not None else "",
        "similarity": {k: getattr(alignment, k) for k in ("offset_x", "offset_y", "rotation", "scale")},
    }
    return {"slide": target.pk, "stain": target.stain, "shape": shape, "geometry": mapped, "transfer": transfer}


def annotation_transfer(*, annotation: Annotation, user) -> Annotation:
    """Copy the annotation onto the paired slide as a new annotation marked transferred."""
    existing = Annotation.objects.filter(transferred_from=annotation, deleted=False).first()
    if existing is not None:
        raise TransferConflict(f"already copied to the other slide as annotation #{existing.pk}", existing=existing)
    mapped = annotation_map(annotation)
    target = Slide.objects.get(pk=mapped["slide"])
    copy = annotation_create(slide=target, user=user, geometry=mapped["geometry"], label=annotation.label.name,
                             comment=annotation.comment, shape=mapped["shape"], source="transferred")
    copy.transferred_from = annotation
    copy.transfer = {**mapped["transfer"], "at": timezone.now().isoformat()}
    copy.save(update_fields=["transferred_from", "transfer"])
    return copy
