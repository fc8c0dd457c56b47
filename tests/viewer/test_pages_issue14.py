"""Smaller page fixes of issue 14 item 12: the model card in words (no raw quantiles, no server
path), the Admin link only for accounts Django's admin lets in, audit details as key/values."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.django_db


def test_model_card_says_percentiles_and_no_server_path(client_for, pathologist, tmp_path):
    from analysis.models import ModelVersion

    directory = tmp_path / "secret-server-folder" / "demo-synthetic"
    card = {"cutoffs": [56.86417, 74.93026], "spec": {"risk_quantiles": [1 / 3, 2 / 3]},
            "risk_groups": {"cutoff_method": "quantiles [0.3333333333333333, 0.6666666666666666] of the out-of-fold scores",
                            "rule": "Low: score < cutoffs[0]"},
            "trained_at": "2026-12-06T10:51:21+00:00", "training_seconds": 12.4, "metrics": {}}
    model = ModelVersion.objects.create(name="demo", directory=str(directory), groups=["clinical"], card=card)
    html = client_for(pathologist).get(f"/models/{model.pk}/").content.decode()
    assert "0.3333" not in html and "secret-server-folder" not in html and "cutoffs[0]" not in html
    assert "33rd and 67th percentiles" in html and "Low: score below 56.9" in html and "74.9 and above" in html
    assert "demo-synthetic" in html and "2026-12-06 10:51" in html


def test_admin_link_only_where_django_admin_lets_the_user_in(client_for, make_user):
    role_admin = make_user("roleadmin", "admin", "pathologist")
    html = client_for(role_admin).get("/").content.decode()
    assert "/admin/" not in html and ">Audit<" in html  # the product's own admin pages stay
    from django.contrib.auth.models import User

    superuser = User.objects.create_superuser("root", "root@example.org", "pw-long-enough-1")
    assert '/admin/"' in client_for(superuser).get("/").content.decode()


def test_audit_details_are_readable(client_for, make_user, case):
    from cases.audit import audit_record

    admin = make_user("auditor", "admin")
    audit_record(user=admin, action="case.update", case=case,
                 detail={"before": {"age": 51, "hr_status": ""}, "after": {"age": 52}, "flag": True})
    html = client_for(admin).get("/audit/").content.decode()
    assert "{&#x27;before&#x27;" not in html and "{'before'" not in html
    assert "<dt>before · age</dt><dd>51</dd>" in html and "<dt>before · hr status</dt><dd>–</dd>" in html
    assert "<dt>flag</dt><dd>yes</dd>" in html
