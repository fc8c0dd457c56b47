"""Job handlers: thin adapters from a Job row to the science in analysis.core."""
from __future__ import annotations

import time
from pathlib import Path

from analysis.jobs.registry import job_handler
from analysis.jobs.runner import JobCancelled, JobFailure
from analysis.models import JobKind


@job_handler(JobKind.SELFTEST)
def selftest(job, context) -> dict:
    """Operator health check of a worker: steps through `seconds` with progress and cancel checks."""
    seconds = float(job.params.get("seconds", 1.0))
    steps = max(1, int(seconds * 10))
    for step in range(steps):
        time.sleep(seconds / steps)
        context.progress(step + 1, steps, f"step {step + 1} of {steps}")
    if job.params.get("fail"):
        raise ValueError(str(job.params["fail"]))
    return {"steps": steps}


@job_handler(JobKind.CONVERT_SLIDE)
def convert_slide(job, context) -> dict:
    """An uploaded (or imported) plain image into a tiled pyramid (analysis.conversion): at most
    LADDER_MAX_CONVERSIONS at once; the slide becomes ready, or failed with the reason."""
    from analysis.conversion import slide_convert

    slide = job.slide
    if slide is None:
        raise JobFailure("the slide of this job no longer exists")
    context.progress(0.0, 1, "waiting for a free conversion slot")
    slide = slide_convert(slide=slide, log=context.log,
                          waiting=lambda: context.progress(0.0, 1, "waiting for a free conversion slot"))
    from analysis.slide_ready import slide_ready

    slide_ready(slide=slide, user=job.created_by)
    return {"slide": slide.pk, "width": slide.width, "height": slide.height}


@job_handler(JobKind.ANALYZE_SLIDE)
def analyze_slide(job, context) -> dict:
    """Segment and classify every cell of a slide (HER2 membranes on IHC), then its features.

    The run folder is built under a temporary name and renamed when complete; a failed or
    cancelled run leaves nothing behind.
    """
    from analysis.core.slides.reader import SlideError, SlideReader
    from analysis.core.slides.tissue import NoTissueError
    from analysis.core.pipeline import Cancelled, analyze_slide as analyze_whole_slide
    from analysis.results import analysis_run_publish, run_dir_new, run_discard, slide_features_prepare
    from analysis.segmenters import segmenter_for

    slide = job.slide
    if slide is None:
        raise JobFailure("the slide of this job no longer exists")
    if not slide.mpp_x:
        raise JobFailure(f"{slide.name}: the resolution (µm per pixel) is unknown; set it on the case page, "
                         "then run the analysis again")
    try:
        reader = SlideReader(Path(slide.file_path))
    except SlideError as exc:
        raise JobFailure(str(exc)) from exc
    from django.conf import settings

    from analysis.core.her2.grading import Her2InputError, her2_params_named

    try:
        her2_params = her2_params_named(settings.LADDER_HER2_THRESHOLDS)
    except Her2InputError as exc:
        raise JobFailure(f"LADDER_HER2_THRESHOLDS: {exc}") from exc
    # A job may name its segmenter (the demo's synthetic phantom: "classical"); else LADDER_SEGMENTER.
    segmenter = segmenter_for(stain=slide.stain, choice=job.params.get("segmenter"), log=context.log)
    info = segmenter.info
    context.log(f"segmenter {info.name} (version {info.version}){' (approximate)' if info.approximate else ''}"
                f"{', weights ' + info.weights if info.weights else ''}")
    out_dir, relative = run_dir_new(slide=slide)
    try:
        summary = analyze_whole_slide(
            reader=reader, stain=slide.stain, segmenter=segmenter, out_dir=out_dir, mpp=slide.mpp_x,
            progress=lambda done, total, message: context.progress(0.9 * done, total, message, raise_on_cancel=False),
            should_cancel=context.cancel_requested, her2_params=her2_params,
        ).to_dict()
    except Cancelled as exc:
        raise JobCancelled() from exc
    except NoTissueError as exc:
        raise JobFailure(f"{slide.name}: no tissue found ({exc})") from exc
    except SlideError as exc:
        raise JobFailure(f"{slide.name}: {exc}") from exc
    for warning in summary.get("warnings") or []:
        context.log(f"warning: {warning}")
    try:
        context.progress(0.92, 1, "computing cell graphs and slide features")
        prepared = slide_features_prepare(slide=slide, folder=out_dir, log=context.log)
        # The run appears (to viewers, overlays, scoring) only now, with its edges and features.
        run, features = analysis_run_publish(slide=slide, job=job, run_dir=relative, summary=summary,
                                             prepared=prepared)
    except BaseException:
        run_discard(out_dir)
        raise
    if features.reason:
        context.log(f"slide features not computed: {features.reason}")
    else:
        from analysis.scoring import score_enqueue

        score_enqueue(case=slide.case)  # new features: the case's score follows
    return {"run": run.pk, "cells": run.n_cells, "features": features.status, "warnings": summary.get("warnings", []),
            "message": f"Finished: {run.n_cells:,} cells"
                       + ("" if not features.reason else "; slide features not computed")}


@job_handler(JobKind.SCORE_CASE)
def score_case(job, context) -> dict:
    """Score the case with the active model (probability, score, risk group, attributions)."""
    from analysis.scoring import ModelRegistryError, case_score_compute

    if job.case is None:
        raise JobFailure("the case of this job no longer exists")
    try:
        score = case_score_compute(case=job.case)
    except ModelRegistryError as exc:
        raise JobFailure(str(exc)) from exc
    if score.message:
        context.log(score.message)
    if score.status != "scored":  # the job ran, the case is not scored: say so, not "succeeded"
        reason = score.message[:1].lower() + score.message[1:]
        return {"score": score.pk, "status": score.status, "risk_group": "", "message": f"Not scored: {reason}"}
    return {"score": score.pk, "status": score.status, "risk_group": score.risk_group,
            "message": f"Scored: {score.score:.0f}, {score.risk_group} risk"}


@job_handler(JobKind.REGISTER_PAIR)
def register_pair(job, context) -> dict:
    """Register the case's IHC onto its H&E (similarity, then a smooth non-rigid field) and store it."""
    from analysis.registration import registration_run

    if job.case is None:
        raise JobFailure("the case of this job no longer exists")
    return registration_run(job, context)
