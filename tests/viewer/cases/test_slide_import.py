"""Slide import: real formats, conversion, refused paths and bad files leave nothing behind."""
from __future__ import annotations

import os

import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from openslide import OpenSlide

from cases.models import AuditEvent, Case, MppSource, Slide, SlideAlignment
from viewer.cases.services.slides import SlideImportError, slide_import, slide_set_mpp


def test_import_aperio_records_metadata(he_slide):
    slide = Slide.objects.get(pk=he_slide.pk)
    assert slide.status == "ready" and slide.vendor == "aperio"
    assert (slide.width, slide.height, slide.level_count) == (2220, 2967, 1)
    assert slide.mpp_x == pytest.approx(0.499) and slide.mpp_source == MppSource.METADATA
    assert slide.objective_power == 20 and len(slide.checksum) == 64
    assert AuditEvent.objects.filter(action="slide.import", slide=slide).exists()


def test_slide_without_mpp_is_unknown_until_set(ihc_slide, pathologist):
    assert ihc_slide.mpp_x is None and ihc_slide.mpp_source == MppSource.UNKNOWN
    slide_set_mpp(slide=ihc_slide, mpp=0.25, user=pathologist)
    ihc_slide.refresh_from_db()
    assert ihc_slide.mpp_x == 0.25 and ihc_slide.mpp_source == MppSource.USER
    with pytest.raises(SlideImportError, match="plausible"):
        slide_set_mpp(slide=ihc_slide, mpp=0, user=pathologist)


def test_pair_gets_default_alignment(he_slide, ihc_slide):
    alignment = SlideAlignment.objects.get(fixed=he_slide, moving=ihc_slide)
    assert (alignment.offset_x, alignment.offset_y, alignment.rotation, alignment.scale) == (0, 0, 0, 1)


@pytest.mark.slow
def test_plain_jpeg_is_converted_once(case, shared_file):
    slide = slide_import(case=case, stain="he", path=shared_file("slides/her2st-C2-HE.jpg"))
    assert slide.converted and slide.file_path.endswith(".tiff")
    converted = OpenSlide(slide.file_path)
    assert converted.dimensions == (9274, 9911) == (slide.width, slide.height)
    assert converted.level_count > 1
    assert slide.mpp_x is None  # a JPEG says nothing true about its resolution
    other = Case.objects.create(case_id="CASE-2")
    again = slide_import(case=other, stain="he", path=shared_file("slides/her2st-C2-HE.jpg"))
    assert again.file_path == slide.file_path  # converted once, reused


@pytest.mark.parametrize("name, message", [
    ("bad/broken.svs", "damaged or truncated"),
    ("bad/malformed-wsi.dcm", "DICOM"),
])
def test_bad_files_fail_cleanly(case, shared_file, name, message):
    before = set((settings.LADDER_UPLOAD_DIR).rglob("*")) if settings.LADDER_UPLOAD_DIR.exists() else set()
    with pytest.raises(SlideImportError, match=message):
        slide_import(case=case, stain="he", path=shared_file(name))
    assert not Slide.objects.exists()
    after = set((settings.LADDER_UPLOAD_DIR).rglob("*")) if settings.LADDER_UPLOAD_DIR.exists() else set()
    assert after == before


def test_paths_outside_roots_are_refused(case, shared_data, tmp_path):
    outside = tmp_path / "secret.svs"
    outside.write_bytes((shared_data / "slides" / "CMU-1-Small-Region.svs").read_bytes())
    with pytest.raises(SlideImportError, match="outside the configured slide folders"):
        slide_import(case=case, stain="he", path=outside)
    # '..' that starts inside a root and climbs out of it
    climbing = str(shared_data) + "/.." * len(shared_data.parts) + str(outside)
    with pytest.raises(SlideImportError, match="outside the configured slide folders"):
        slide_import(case=case, stain="he", path=climbing)
    # a symlink inside a root pointing out of it
    inside_root = settings.LADDER_UPLOAD_DIR
    inside_root.mkdir(parents=True, exist_ok=True)
    link = inside_root / "link.svs"
    link.unlink(missing_ok=True)
    os.symlink(outside, link)
    try:
        with pytest.raises(SlideImportError, match="outside the configured slide folders"):
            slide_import(case=case, stain="he", path=link)
    finally:
        link.unlink()
    assert not Slide.objects.exists()


def test_duplicate_in_case_is_refused(he_slide, shared_file):
    with pytest.raises(SlideImportError, match="already imported"):
        slide_import(case=he_slide.case, stain="he", path=shared_file("slides/CMU-1-Small-Region.svs"))


def test_import_command(db, shared_file, capsys):
    call_command("import_slides", "--case", "CMD-1", "--stain", "ihc", str(shared_file("slides/tcga-cr-7395-01a-01-ts1.svs")))
    assert "mpp unknown" in capsys.readouterr().out
    assert Slide.objects.get(case__case_id="CMD-1").stain == "ihc"
    with pytest.raises(CommandError, match="1 of 1"):
        call_command("import_slides", "--case", "CMD-1", "--stain", "he", str(shared_file("bad/broken.svs")))
    assert Slide.objects.count() == 1


def test_paths_outside_roots_all_get_the_same_answer(case, tmp_path):
    """Issue 15, defect 10: no file-existence oracle outside the roots (a file, a missing file, a
    folder, an unreadable file, a '..' escape, a symlink in a root to a missing file outside)."""
    inside_root = settings.LADDER_UPLOAD_DIR
    inside_root.mkdir(parents=True, exist_ok=True)
    link = inside_root / "dangling.svs"
    link.unlink(missing_ok=True)
    os.symlink(tmp_path / "nonexistent-xyz", link)
    answers = set()
    try:
        for path in ["/etc/shadow", "/etc/nonexistent-xyz", "/root", "/etc", str(tmp_path),
                     str(inside_root) + "/../../../../../../../etc/passwd", link]:
            with pytest.raises(SlideImportError) as refused:
                slide_import(case=case, stain="he", path=path)
            answers.add(str(refused.value).split(": ", 1)[1])
    finally:
        link.unlink()
    assert len(answers) == 1 and "outside the configured slide folders" in answers.pop()


def test_paths_inside_roots_say_what_is_wrong(case):
    root = settings.LADDER_UPLOAD_DIR
    root.mkdir(parents=True, exist_ok=True)
    with pytest.raises(SlideImportError, match="no such file"):
        slide_import(case=case, stain="he", path=root / "nothing-here.svs")
    with pytest.raises(SlideImportError, match="not a file"):
        slide_import(case=case, stain="he", path=root)


def test_api_answers_the_same_for_every_outside_path(client_for, pathologist, case):
    client = client_for(pathologist)
    bodies = []
    for path in ["/etc/shadow", "/etc/nonexistent-xyz", "/root"]:
        response = client.post("/api/slides/", {"case": case.pk, "stain": "he", "path": path},
                               content_type="application/json")
        assert response.status_code == 400, response.content
        bodies.append(response.content.decode().replace(path, "<path>"))
    assert len(set(bodies)) == 1 and "outside the configured slide folders" in bodies[0]
