"""Cell analysis jobs end to end on real files: runs, features, edges, HER2, clear failures."""
from __future__ import annotations

import shutil

import pytest

from analysis.core.cells.table import read_cells, read_edges
from analysis.jobs.runner import job_claim, job_execute
from analysis.models import AnalysisRun, FeatureStatus, Job, JobKind, JobStatus
from analysis.results import run_path, runs_root
from analysis.services import JobStateError, analysis_enqueue, job_enqueue
from cases.models import Stain


def run_now(job: Job) -> Job:
    """Run a queued job in this process, exactly as a worker does."""
    return job_execute(job_claim(job_id=job.pk, worker="test"))


@pytest.mark.django_db(transaction=True)
def test_he_and_ihc_analysis_of_phantom(phantom_case, phantom_pair):
    he, ihc = phantom_case.slide_for(Stain.HE), phantom_case.slide_for(Stain.IHC)
    for slide in (he, ihc):
        job = run_now(analysis_enqueue(slide=slide))
        assert job.status == JobStatus.SUCCEEDED, job.error
        assert job.progress == 1.0 and "segmenter" in job.log
    he_run, ihc_run = AnalysisRun.objects.get(slide=he), AnalysisRun.objects.get(slide=ihc)
    assert he_run.approximate and he_run.segmenter.startswith("classical")
    truth_cells = sum(phantom_pair.class_counts.values())
    assert 0.8 * truth_cells < he_run.n_cells < 1.2 * truth_cells
    cells = read_cells(path=run_path(he_run) / "cells.parquet")
    assert len(cells) == he_run.n_cells and {"x", "y", "cls", "contour"} <= set(cells.columns)
    edges = read_edges(path=run_path(he_run) / "edges.parquet")
    assert len(edges) > 0 and set(edges["source"]) <= set(cells["id"])
    assert ihc_run.her2["score"] == f"{phantom_pair.expected_her2_score}+"
    he_features = he.features.get()
    ihc_features = ihc.features.get()
    assert he_features.status == FeatureStatus.COMPUTED and len(he_features.values) == 69
    assert len(ihc_features.values) == 70 and he_features.schema_version == "1"
    # nothing half-written is left in the runs folder
    assert not [p for p in runs_root().rglob("*") if ".tmp" in p.name]


@pytest.mark.django_db(transaction=True)
def test_unknown_mpp_is_refused_with_a_reason(case, ihc_slide):
    with pytest.raises(JobStateError, match="resolution"):
        analysis_enqueue(slide=ihc_slide)
    job = run_now(job_enqueue(kind=JobKind.ANALYZE_SLIDE, slide=ihc_slide))
    assert job.status == JobStatus.FAILED and "resolution (µm per pixel) is unknown" in job.error


@pytest.mark.django_db(transaction=True)
def test_corrupt_slide_fails_its_job_only(case, he_slide, tmp_path, client_for, pathologist):
    from cases.models import Slide

    broken = tmp_path / "truncated.svs"
    original = he_slide.file_path
    shutil.copy(original, broken)
    with open(broken, "r+b") as handle:
        handle.truncate(4096)
    Slide.objects.filter(pk=he_slide.pk).update(file_path=str(broken))
    he_slide.refresh_from_db()
    job = run_now(analysis_enqueue(slide=he_slide))
    assert job.status == JobStatus.FAILED and "truncated.svs" in job.error
    assert not AnalysisRun.objects.exists()
    client = client_for(pathologist)
    assert client.get(f"/cases/{case.case_id}/").status_code == 200
    assert "Last analysis failed" in client.get(f"/cases/{case.case_id}/").content.decode()


@pytest.mark.django_db(transaction=True)
def test_cancelled_analysis_leaves_nothing(phantom_case):
    he = phantom_case.slide_for(Stain.HE)
    job = analysis_enqueue(slide=he)
    Job.objects.filter(pk=job.pk).update(cancel_requested=True)
    job = run_now(job)
    assert job.status == JobStatus.CANCELLED
    assert not AnalysisRun.objects.exists()
    assert not list(runs_root().glob(f"slide-{he.pk}/*"))


@pytest.mark.django_db(transaction=True)
def test_a_job_may_name_its_segmenter(he_slide, settings):
    """The demo's phantom names the classical segmenter; the product default stays the model."""
    settings.LADDER_SEGMENTER = "nucleus-model"
    job = run_now(job_enqueue(kind=JobKind.ANALYZE_SLIDE, slide=he_slide, params={"segmenter": "classical"}))
    assert job.status == JobStatus.SUCCEEDED, job.error
    assert AnalysisRun.objects.get(slide=he_slide).segmenter.startswith("classical")
    job = run_now(job_enqueue(kind=JobKind.ANALYZE_SLIDE, slide=he_slide, params={"segmenter": "magic"}, max_attempts=1))
    assert job.status == JobStatus.FAILED and "segmenter must be one of" in job.error
