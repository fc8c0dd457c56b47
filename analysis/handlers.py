"""Job handlers: thin adapters from a Job row to the science in analysis.core."""
from __future__ import annotations

import time

from analysis.jobs.registry import job_handler
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
