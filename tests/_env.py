"""Loaded by pytest before Django (pytest.ini: -p tests._env): test environment defaults.

Each test session gets its own LADDER_DATA_DIR, and the real test data folder is an
allowed slide root. Variables already set (e.g. DATABASE_URL, REDIS_URL for the
scale-out run) are kept.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("LADDER_TEST_DATA") or PROJECT_ROOT.parent / "shared" / "data").resolve()

if not os.environ.get("LADDER_DATA_DIR"):
    os.environ["LADDER_DATA_DIR"] = tempfile.mkdtemp(prefix="ladder-test-")
_roots = os.environ.get("LADDER_SLIDE_ROOTS", "")
os.environ["LADDER_SLIDE_ROOTS"] = os.pathsep.join(filter(None, [_roots, str(SHARED_DATA)]))
os.environ.setdefault("LADDER_JOB_HEARTBEAT_TIMEOUT", "6")
# The synthetic phantom slides (and the suites built on their known cell counts) were drawn for
# the classical segmenter; the product's default, the trained nucleus model, is tested on real
# tiles in tests/analysis/core/cells/segmentation/nucleus_model/ (which choose it explicitly).
os.environ.setdefault("LADDER_SEGMENTER", "classical")
# Suites that import a slide pair count and run their own jobs; the registration tests turn the
# automatic registration on (tests/analysis/test_registration_job.py).
os.environ.setdefault("LADDER_AUTO_REGISTER", "0")
# Likewise the automatic analysis of new slides (tests/viewer/cases/test_auto_analysis.py turns it on).
os.environ.setdefault("LADDER_AUTO_ANALYSE", "0")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
