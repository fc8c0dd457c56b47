"""Tumour board end to end: the presenter starts a session from the case page, a pathologist
joins in another browser context and follows the presenter's view, pointer and attribution."""
from __future__ import annotations

import re

import pytest

pytestmark = pytest.mark.e2e

READY_JS = """() => {
  const board = document.getElementById('board');
  return board && board.dataset.connected === '1' && window.caseViewer && window.caseBoard
    && window.caseBoard.viewer && window.caseViewer.viewers.every(v => v.world.getItemCount());
}"""
CENTRE_AT_JS = """([x, y, zoom]) => {
  const s = window.caseViewer.getState();
  return s && Math.abs(s.center.x - x) < 0.5 && Math.abs(s.center.y - y) < 0.5 && Math.abs(s.zoom / zoom - 1) < 1e-6;
}"""


def _login(browser, live_site, username: str):
    context = browser.new_context(viewport={"width": 1400, "height": 860})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{live_site['url']}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", live_site["logins"][username])
    page.click("button[type=submit]")
    page.wait_for_url(f"{live_site['url']}/")
    return context, page, errors


def test_follower_follows_the_presenter(browser, live_site):
    presenter_context, presenter, presenter_errors = _login(browser, live_site, "presenter")
    follower_context, follower, follower_errors = _login(browser, live_site, "pathologist")
    try:
        # The presenter starts a session from the case page.
        presenter.goto(f"{live_site['url']}/cases/DEMO-001/", wait_until="domcontentloaded", timeout=60000)
        presenter.click("#board-present")
        presenter.wait_for_url(re.compile(r".*/boards/\d+/$"), wait_until="domcontentloaded", timeout=60000)
        board_url = presenter.url
        presenter.wait_for_function(READY_JS, timeout=60000)
        presenter.wait_for_function("() => window.caseBoard.started", timeout=30000)
        assert presenter.locator("#board").get_attribute("data-role") == "driver"

        follower.goto(board_url, wait_until="domcontentloaded", timeout=60000)
        follower.wait_for_function(READY_JS, timeout=60000)
        assert follower.locator("#board").get_attribute("data-role") == "follower"
        assert "Following presenter" in follower.inner_text("#board-role")

        # The presenter moves (as a drag or the keyboard would): the follower's view goes there.
        target = presenter.evaluate("""() => {
          const s = window.caseViewer.getState();
          window.caseViewer.setState({center: {x: s.center.x + 600, y: s.center.y + 350}, zoom: s.zoom * 2, rotation: 0});
          return window.caseViewer.getState();
        }""")
        follower.wait_for_function(CENTRE_AT_JS, arg=[target["center"]["x"], target["center"]["y"], target["zoom"]],
                                   timeout=10000)

        # A real mouse drag on the presenter's H&E pane.
        box = presenter.locator(".cv-pane[data-index='0'] .cv-stage").bounding_box()
        x, y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        presenter.mouse.move(x, y)
        presenter.mouse.down()
        presenter.mouse.move(x - 120, y - 80, steps=8)
        presenter.mouse.up()
        presenter.wait_for_timeout(1500)  # the drag's inertia settles
        dragged = presenter.evaluate("() => window.caseViewer.getState()")
        assert abs(dragged["center"]["x"] - target["center"]["x"]) > 20, "the drag did not pan"
        follower.wait_for_function(CENTRE_AT_JS, arg=[dragged["center"]["x"], dragged["center"]["y"],
                                                      dragged["zoom"]], timeout=10000)

        # The presenter's pointer shows as a dot on the follower's H&E, at the same slide point.
        presenter.mouse.move(x + 40, y + 30)
        follower.wait_for_function("() => { const d = document.querySelector('.cv-pane[data-index=\"0\"] .board-pointer');"
                                   " return d && !d.hidden; }", timeout=10000)
        pointer = presenter.evaluate("() => window.caseBoard.pointer")
        # the dot may first show a position from the drag; the last one follows within the send interval
        follower.wait_for_function("([x, y]) => { const p = window.caseBoard.shownPointer; return p && p.x === x && p.y === y; }",
                                   arg=[pointer["x"], pointer["y"]], timeout=10000)

        # Detached, the follower keeps its own view; re-attached, it jumps to the presenter's.
        follower.click("#board-detach")
        assert follower.locator("#board").get_attribute("data-attached") == "0"
        own = follower.evaluate("() => window.caseViewer.getState()")
        moved = presenter.evaluate("""() => {
          const s = window.caseViewer.getState();
          window.caseViewer.setState({center: {x: s.center.x - 400, y: s.center.y + 200}, zoom: s.zoom, rotation: 0});
          return window.caseViewer.getState();
        }""")
        presenter.wait_for_timeout(800)
        still = follower.evaluate("() => window.caseViewer.getState()")
        assert still["center"] == own["center"], "a detached follower moved"
        follower.click("#board-detach")
        follower.wait_for_function(CENTRE_AT_JS, arg=[moved["center"]["x"], moved["center"]["y"], moved["zoom"]],
                                   timeout=10000)

        # The follower cannot steer: its moves stay local and the presenter does not move.
        follower.evaluate("""() => { const s = window.caseViewer.getState();
          window.caseViewer.setState({center: {x: s.center.x + 999, y: s.center.y}, zoom: s.zoom, rotation: 0}); }""")
        presenter.wait_for_timeout(800)
        assert presenter.evaluate("() => window.caseViewer.getState()")["center"] == moved["center"]

        # The board record: a snapshot of the current view and the case's PDF summary.
        presenter.fill("#board-caption", "Invasive front")
        presenter.click("#board-snapshot")
        presenter.wait_for_selector("#board-records li[data-record-id] >> text=Invasive front", timeout=30000)
        presenter.click("#board-summary")
        presenter.wait_for_selector("#board-records li[data-record-id] >> text=Case summary (PDF)", timeout=60000)
        links = presenter.eval_on_selector_all("#board-records a", "els => els.map(a => a.href)")
        png = presenter.request.get(links[0])
        assert png.status == 200 and png.body()[:8] == b"\x89PNG\r\n\x1a\n"
        pdf = presenter.request.get(links[1])
        assert pdf.status == 200 and pdf.body()[:4] == b"%PDF"
    finally:
        presenter_context.close()
        follower_context.close()
    assert presenter_errors == [] and follower_errors == [], (presenter_errors, follower_errors)
