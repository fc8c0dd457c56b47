"""Tiles, DZI and thumbnails through Django's URLs and through the ASGI fast path."""
from __future__ import annotations

import io
import os

import pytest
from django.core.cache import caches
from PIL import Image

from tests.viewer.asgi import asgi_get

# Tiles are rendered on the tile thread pool, with its own database connections: data must be committed.
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _empty_tile_cache():
    from viewer.tiles.services import tile_source_forget

    caches["tiles"].clear()
    tile_source_forget()


def test_dzi_and_metadata_api(client_for, pathologist, he_slide):
    client = client_for(pathologist)
    data = client.get(f"/api/slides/{he_slide.pk}/").json()
    assert data["dzi_url"] == f"/slides/{he_slide.pk}.dzi"
    assert data["mpp_x"] == pytest.approx(0.499) and data["width"] == 2220
    dzi = client.get(data["dzi_url"])
    assert dzi.status_code == 200 and b'Width="2220"' in dzi.content and b'TileSize="240"' in dzi.content  # the SVS's own JPEG tile size


def test_tile_jpeg_with_etag_and_304(client_for, pathologist, he_slide):
    client = client_for(pathologist)
    url = f"/slides/{he_slide.pk}_files/12/1_2.jpeg"
    first = client.get(url)
    assert first.status_code == 200 and first["Content-Type"] == "image/jpeg"
    assert Image.open(io.BytesIO(first.content)).size == (240, 240)  # the stored tile, passed through
    assert "private" in first["Cache-Control"] and first["ETag"]
    again = client.get(url, HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304 and again.content == b""


def test_tile_out_of_range_is_404(client_for, pathologist, he_slide):
    client = client_for(pathologist)
    assert client.get(f"/slides/{he_slide.pk}_files/12/99_0.jpeg").status_code == 404
    assert client.get(f"/slides/{he_slide.pk}_files/40/0_0.jpeg").status_code == 404
    assert client.get("/slides/999999.dzi").status_code == 404


def test_thumbnail_sizes(client_for, pathologist, he_slide):
    response = client_for(pathologist).get(f"/slides/{he_slide.pk}/thumbnail.jpg?size=128")
    assert response.status_code == 200
    assert max(Image.open(io.BytesIO(response.content)).size) == 128


def test_anonymous_gets_no_pixels(client, he_slide):
    for url in (f"/slides/{he_slide.pk}.dzi", f"/slides/{he_slide.pk}_files/0/0_0.jpeg",
                f"/slides/{he_slide.pk}/thumbnail.jpg"):
        assert client.get(url).status_code == 401


def test_no_route_serves_associated_images(client_for, pathologist, he_slide):
    client = client_for(pathologist)
    for url in (f"/slides/{he_slide.pk}/label.jpg", f"/slides/{he_slide.pk}/macro.jpg",
                f"/slides/{he_slide.pk}/associated/label", f"/api/slides/{he_slide.pk}/label/"):
        assert client.get(url).status_code == 404
    assert "label" not in str(client.get(f"/api/slides/{he_slide.pk}/").json())




@pytest.mark.django_db(transaction=True)
def test_fast_path_authenticates_session_and_token(client, pathologist, he_slide):
    from rest_framework.authtoken.models import Token

    from viewer.tiles.asgi import forget_credentials

    forget_credentials()
    path = f"/slides/{he_slide.pk}_files/12/0_0.jpeg"
    status, _, _ = asgi_get(path, [])
    assert status == 401
    client.force_login(pathologist)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    status, headers, body = asgi_get(path, [(b"cookie", cookie)])
    assert status == 200 and headers[b"content-type"] == b"image/jpeg" and body[:2] == b"\xff\xd8"
    token = Token.objects.create(user=pathologist)
    status, _, _ = asgi_get(path, [(b"authorization", f"Token {token.key}".encode())])
    assert status == 200
    status, _, body = asgi_get("/api/cases/", [])
    assert status == 599 and body == b"django"  # everything else goes to Django


def test_svs_stored_tile_is_served_as_stored_and_jpeg2000_keeps_256(client_for, pathologist, he_slide, case, shared_file):
    """Through the app: a full-resolution SVS tile is the file's JPEG (its tables and Adobe RGB marker in
    front, no re-encode); the JPEG 2000 SVS (nothing to pass through) keeps the 256 px grid it had."""
    from analysis.core.slides.reader import SlideReader
    from viewer.cases.services.slides import slide_import

    client = client_for(pathologist)
    body = client.get(f"/slides/{he_slide.pk}_files/12/4_3.jpeg").content
    reader = SlideReader(he_slide.file_path)
    assert body == reader.raw_jpeg_tile(level=0, col=4, row=3, tile_size=240)
    assert body[:11] == b"\xff\xd8\xff\xee\x00\x0eAdobe"
    reader.close()
    jp2k = slide_import(case=case, stain="ihc", path=shared_file("slides/tcga-cr-7395-01a-01-ts1.svs"))
    dzi = client.get(f"/slides/{jp2k.pk}.dzi")
    assert b'TileSize="256"' in dzi.content
    tile = client.get(f"/slides/{jp2k.pk}_files/13/3_2.jpeg")
    assert tile.status_code == 200 and Image.open(io.BytesIO(tile.content)).size == (256, 256)


@pytest.mark.skipif(bool(os.environ.get("REDIS_URL")),
                    reason="the fast path needs the in-process tile cache; scale-out caches tiles in Redis")
def test_warm_tile_is_answered_on_the_event_loop_and_still_needs_login(monkeypatch, pathologist, he_slide):
    """A tile already in the in-process cache, for credentials checked moments ago, is answered without the
    thread pool; anyone else still goes through the pool's login check and gets 401."""
    from rest_framework.authtoken.models import Token

    from viewer.tiles import asgi

    asgi.forget_credentials()
    path = f"/slides/{he_slide.pk}_files/12/2_1.jpeg"
    token = Token.objects.create(user=pathologist)
    auth = [(b"authorization", f"Token {token.key}".encode())]
    status, headers, cold = asgi_get(path, auth)  # rendered on the pool, cached
    assert status == 200

    def no_pool():
        raise AssertionError("warm tile sent to the thread pool")

    with monkeypatch.context() as patched:
        patched.setattr(asgi, "executor", no_pool)
        status, warm_headers, warm = asgi_get(path, auth)
        assert status == 200 and warm == cold and warm_headers[b"etag"] == headers[b"etag"]
        status, _, body = asgi_get(path, auth + [(b"if-none-match", headers[b"etag"])])
        assert status == 304 and body == b""
        with pytest.raises(AssertionError, match="thread pool"):  # not logged in: never from memory
            asgi_get(path, [(b"authorization", b"Token not-a-real-token")])
    status, _, _ = asgi_get(path, [(b"authorization", b"Token not-a-real-token")])
    assert status == 401
