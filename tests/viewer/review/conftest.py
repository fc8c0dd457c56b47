"""Fixtures of the review tests: slide rows without pixels (annotations never read pixels)."""
from __future__ import annotations

import pytest


@pytest.fixture
def slides(case):
    from cases.models import Slide

    he = Slide.objects.create(case=case, stain="he", name="he.svs", source_path="/nowhere/he.svs", status="ready",
                              width=20000, height=15000)
    ihc = Slide.objects.create(case=case, stain="ihc", name="ihc.svs", source_path="/nowhere/ihc.svs",
                               status="ready", width=18000, height=14000)
    return he, ihc


@pytest.fixture
def scored(case):
    """The case scored 'Low' by a (registered, not trained) model."""
    from analysis.models import CaseScore, ModelVersion

    model = ModelVersion.objects.create(name="test model", directory="/nowhere/model", groups=["clinical"])
    return CaseScore.objects.create(case=case, model=model, schema_version="1", probability_pcr=0.8, score=20.0, base_value=0.5,
                                    risk_group="Low")


@pytest.fixture
def ihc_run(slides):
    from analysis.models import AnalysisRun

    return AnalysisRun.objects.create(slide=slides[1], run_dir="x", segmenter="classical", her2={"score": "2+"})


@pytest.fixture
def api(client):
    """A DRF-less JSON helper around the Django test client."""
    import json

    class Api:
        def login(self, user):
            client.force_login(user)
            return self

        def logout(self):
            client.logout()
            return self

        def _send(self, method, url, body=None):
            kwargs = {}
            if body is not None:
                kwargs = {"data": json.dumps(body), "content_type": "application/json"}
            return getattr(client, method)(url, **kwargs)

        def get(self, url):
            return client.get(url)

        def post(self, url, body=None):
            return self._send("post", url, body)

        def put(self, url, body=None):
            return self._send("put", url, body)

        def patch(self, url, body=None):
            return self._send("patch", url, body)

        def delete(self, url, body=None):
            return self._send("delete", url, body)

    return Api()
