"""The API documentation pages (issue 14 item 12): Swagger UI from this origin, behind login;
the schema readable in a browser."""
from __future__ import annotations

import pytest

pytestmark = pytest.mark.django_db


def test_swagger_ui_is_served_offline_behind_login(client, pathologist):
    anonymous = client.get("/api/docs/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/accounts/login/")
    client.force_login(pathologist)
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "https://" not in html and "http://" not in html  # nothing from a CDN
    assert "<script>" not in html  # no inline script: the CSP (script-src 'self') allows the page
    for asset in ("swagger-ui-dist/swagger-ui-bundle.js", "swagger-ui-dist/swagger-ui.css"):
        path = f"/static/drf_spectacular_sidecar/{asset}"
        assert path in html
        response = client.get(path)
        assert response.status_code == 200 and b"".join(response.streaming_content if response.streaming else [response.content])
    script = client.get("/api/docs/?script")
    assert script.status_code == 200 and b"/api/schema/" in script.content


def test_api_docs_lead_back_to_the_app(client, pathologist):
    client.force_login(pathologist)
    html = client.get("/api/docs/").content.decode()
    # the site's own header and navigation, as on every page, and a plain link back
    assert '<nav class="mainnav" aria-label="Main">' in html and '<a class="brand" href="/">' in html
    assert '<a href="/">Worklist</a>' in html and '<a href="/">Back to the worklist</a>' in html
    assert '<html lang="en">' in html and 'id="swagger-ui"' in html


def test_schema_is_text_in_a_browser_and_data_for_clients(client, pathologist):
    client.force_login(pathologist)
    browser = client.get("/api/schema/", HTTP_ACCEPT="text/html,application/xhtml+xml,*/*;q=0.8")
    assert browser["Content-Type"].startswith("text/plain") and browser.content.startswith(b"openapi:")
    assert client.get("/api/schema/")["Content-Type"].startswith("application/vnd.oai.openapi")
    assert client.get("/api/schema/?format=json").json()["paths"]["/api/cases/"]
