"""Tumour board end to end: the presenter starts a session from the case page, a pathologist
joins in another browser context and follows the presenter's view, pointer and attribution."""
from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.e2e

SHOTS = Path(os.environ.get("LADDER_E2E_SHOTS") or tempfile.mkdtemp(prefix="ladder-shots-"))

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
        # The follower sees both records live, without a reload; each is listed once on either page.
        follower.wait_for_selector("#board-records li[data-record-id] >> text=Invasive front", timeout=10000)
        follower.wait_for_selector("#board-records li[data-record-id] >> text=Case summary (PDF)", timeout=10000)
        for page in (presenter, follower):
            assert page.eval_on_selector_all("#board-records a", "els => els.map(a => a.href)") == links
            assert page.locator("#board-records .board-none").count() == 0
        png = presenter.request.get(links[0])
        assert png.status == 200 and png.body()[:8] == b"\x89PNG\r\n\x1a\n"
        pdf = presenter.request.get(links[1])
        assert pdf.status == 200 and pdf.body()[:4] == b"%PDF"
    finally:
        presenter_context.close()
        follower_context.close()
    assert presenter_errors == [] and follower_errors == [], (presenter_errors, follower_errors)


OUTLINE_JS = """([pane, id]) => {
  const layer = document.querySelector(`.cv-pane[data-index="${pane}"] .board-outline-layer`);
  const path = layer && layer.querySelector('.board-outline');
  if (!path || layer.dataset.annotation !== String(id)) return null;
  const box = path.getBoundingClientRect();
  return {stroke: path.getAttribute('stroke'), width: box.width, height: box.height,
          x: box.x + box.width / 2, y: box.y + box.height / 2};
}"""
NO_OUTLINE_JS = """() => !document.querySelector('.board-outline-layer .board-outline')"""
OPTIONS_JS = """() => [...document.querySelectorAll('#board-handover-to option')].map(o => o.textContent)"""


def test_annotation_outline_presence_controls_and_the_end_of_a_board(browser, live_site):
    """Issue: the outline of the annotation the board goes to (presenter and follower), its comment
    in its card; hand-over lists who is here, "Take control" never for the driver; "End board"
    with a confirmation, the ended board read-only for everyone and listed under Past boards."""
    url = live_site["url"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    presenter_context, presenter, presenter_errors = _login(browser, live_site, "presenter")
    follower_context, follower, follower_errors = _login(browser, live_site, "pathologist")
    for page in (presenter, follower):
        page.set_viewport_size({"width": 1280, "height": 800})
    try:
        presenter.goto(f"{url}/cases/DEMO-001/", wait_until="domcontentloaded", timeout=60000)
        config = presenter.evaluate("() => JSON.parse(document.getElementById('case-viewer-config').textContent)")
        he = next(s for s in config["slides"] if s["stain"] == "he")
        headers = {"X-CSRFToken": config["csrfToken"], "Content-Type": "application/json"}
        # this test's own annotation (the demo case is shared across modules) and its own board
        annotation = presenter.request.post(f"{url}/api/slides/{he['id']}/annotations/", headers=headers, data={
            "type": "Feature", "geometry": {"type": "Polygon", "coordinates": [[[1200, 900], [1700, 1000], [1600, 1500],
                                                                                 [1100, 1400], [1200, 900]]]},
            "properties": {"label": "missed tumour region", "comment": "Outline check: tumour at the margin"}})
        assert annotation.status == 201, annotation.text()
        annotation = annotation.json()
        created = presenter.request.post(f"{url}/api/boards/", headers=headers,
                                         data={"cases": [config["caseId"]], "title": "E2E outline board"})
        assert created.status == 201, created.text()
        board_url = url + created.json()["url"]

        presenter.goto(board_url, wait_until="domcontentloaded", timeout=60000)
        presenter.wait_for_function(READY_JS, timeout=60000)
        presenter.wait_for_function("() => window.caseBoard.started", timeout=30000)
        # the driver is not offered to take the control it has, nor to detach from itself
        assert presenter.is_hidden("#board-take") and presenter.is_hidden("#board-detach")
        # alone: the hand-over says so instead of being an empty drop-down
        assert presenter.evaluate(OPTIONS_JS) == ["Nobody else connected"]
        assert presenter.is_disabled("#board-handover-to") and presenter.is_disabled("#board-handover")

        follower.goto(board_url, wait_until="domcontentloaded", timeout=60000)
        follower.wait_for_function(READY_JS, timeout=60000)
        presenter.wait_for_function(f"() => ({OPTIONS_JS})().includes('pathologist')", timeout=10000)
        assert presenter.is_enabled("#board-handover")
        assert follower.is_visible("#board-detach") and follower.is_hidden("#board-take")  # not the presenter
        _shot(presenter, "board-presenter-controls")

        # hand over: the presenter follows and may take the control back; the new driver may not
        presenter.select_option("#board-handover-to", label="pathologist")
        presenter.click("#board-handover")
        follower.wait_for_function("() => document.getElementById('board').dataset.role === 'driver'", timeout=10000)
        presenter.wait_for_function("() => document.getElementById('board').dataset.role === 'follower'", timeout=10000)
        assert presenter.is_visible("#board-take") and follower.is_hidden("#board-take")
        # the hand-over's toast stands over the slides, not over the side panel's cards, and a click closes it
        follower.wait_for_selector("#board-toast", state="visible", timeout=5000)
        toast = follower.locator("#board-toast").bounding_box()
        side = follower.locator(".board-side").bounding_box()
        assert toast["x"] + toast["width"] <= side["x"], (toast, side)
        follower.click("#board-toast")
        assert follower.is_hidden("#board-toast")
        assert follower.evaluate(OPTIONS_JS) == ["presenter"]
        presenter.click("#board-take")
        presenter.wait_for_function("() => document.getElementById('board').dataset.role === 'driver'", timeout=10000)
        follower.wait_for_function("() => document.getElementById('board').dataset.role === 'follower'", timeout=10000)
        # the controls follow the role with the next presence message (later over Redis)
        presenter.wait_for_selector("#board-take", state="hidden", timeout=10000)

        # the annotation's comment is inside its card
        presenter.click("#board-discussion-toggle")
        card = presenter.locator(f".board-annotation-card[data-annotation='{annotation['id']}']")
        assert "Outline check: tumour at the margin" in card.inner_text()
        assert card.locator(".an-comment").count() == 1

        # a click frames the annotation and outlines it, in its label's colour, on its slide ...
        presenter.click(f"#board-annotations button[data-annotation='{annotation['id']}']")
        drawn = presenter.wait_for_function(OUTLINE_JS, arg=[0, annotation["id"]], timeout=10000).json_value()
        assert drawn["stroke"].lower() == annotation["color"].lower()
        pane = presenter.locator(".cv-pane[data-index='0'] .cv-overlay-root").bounding_box()
        # framed: the outline is big on screen, in the middle of the H&E pane
        assert drawn["width"] > 0.3 * pane["width"] or drawn["height"] > 0.3 * pane["height"], (drawn, pane)
        assert abs(drawn["x"] - (pane["x"] + pane["width"] / 2)) < 0.1 * pane["width"]
        assert abs(drawn["y"] - (pane["y"] + pane["height"] / 2)) < 0.1 * pane["height"]
        assert presenter.evaluate(OUTLINE_JS, [1, annotation["id"]]) is None  # an H&E annotation: not on the IHC
        # ... and for the follower, who follows the presenter's view
        follower.wait_for_function(OUTLINE_JS, arg=[0, annotation["id"]], timeout=10000)
        follower.wait_for_timeout(500)
        _shot(presenter, "board-annotation-outline-presenter")
        _shot(follower, "board-annotation-outline-follower")
        # the outline stays on the slide as the view moves
        before = presenter.evaluate(OUTLINE_JS, [0, annotation["id"]])
        presenter.evaluate("""() => { const s = window.caseViewer.getState();
          window.caseViewer.setState({center: {x: s.center.x + 200, y: s.center.y}, zoom: s.zoom, rotation: 0}); }""")
        presenter.wait_for_function(f"""() => {{ const o = ({OUTLINE_JS})([0, {annotation['id']}]);
          return o && o.x < {before['x']} - 20; }}""", timeout=10000)  # redrawn on the next frame
        presenter.click("#board-annotation-clear")
        presenter.wait_for_function(NO_OUTLINE_JS)
        follower.wait_for_function(NO_OUTLINE_JS, timeout=10000)

        # End board: asked first; cancelling changes nothing
        presenter.click("#board-end")
        assert presenter.is_visible("#board-end-dialog")
        _shot(presenter, "board-end-dialog")
        presenter.click("#board-end-dialog button[value=cancel]")
        presenter.wait_for_timeout(500)
        assert presenter.get_attribute("#board", "data-ended") == "0" and presenter.is_hidden("#board-end-dialog")
        presenter.click("#board-end")
        presenter.click("#board-end-confirm")
        for page in (presenter, follower):
            page.wait_for_function("() => document.getElementById('board').dataset.ended === '1'", timeout=10000)
            assert page.is_visible("#board-ended") and "Ended" in page.inner_text("#board-status")
            for control in ("#board-detach", "#board-handover", "#board-take", "#board-end", "#board-snapshot"):
                assert page.locator(control).count() == 0 or page.is_hidden(control), control
        # reloaded, the page says it from the server: no socket, no presenter controls
        presenter.reload(wait_until="domcontentloaded")
        presenter.wait_for_function("() => window.caseViewer && window.caseBoard && window.caseBoard.viewer",
                                    timeout=60000)
        assert presenter.is_visible("#board-ended") and presenter.inner_text("#board-status") == "Ended"
        assert presenter.locator("#board-take, #board-handover, #board-end, #board-snapshot").count() == 0
        _shot(presenter, "board-ended")

        presenter.goto(f"{url}/boards/")
        assert "E2E outline board" in presenter.inner_text("#board-past-sessions")
        assert "E2E outline board" not in presenter.inner_text("#board-sessions")
        _shot(presenter, "boards-list")
    finally:
        presenter_context.close()
        follower_context.close()
    assert presenter_errors == [] and follower_errors == [], (presenter_errors, follower_errors)


def _shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}-1280x800.png"))
