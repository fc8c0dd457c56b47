"""The embedded worker loop puts back the signal handlers it installed (it may run in-process)."""
import signal

from analysis.jobs.worker import worker_loop


def test_worker_loop_restores_signal_handlers(db):
    before = signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)
    worker_loop(once=True, poll_seconds=0.01)
    assert (signal.getsignal(signal.SIGTERM), signal.getsignal(signal.SIGINT)) == before
