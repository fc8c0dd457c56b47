"""The job system: enqueue, run, report progress, cancel, retry, recover from dead workers.

State lives in the `Job` row. Two ways to execute, same code path (`job_run`):
- embedded: `manage.py worker` (started by `manage.py serve`) polls the table;
- celery: `analysis.tasks.run_job` on Celery workers with Redis as broker.
"""
