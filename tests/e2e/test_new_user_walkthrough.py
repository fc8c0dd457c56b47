"""What a new user found walking the product from a fresh clone, in Chromium on the real
product: a double click closing a polygon zoomed the slide; the magnification keys, the
magnification menu's Esc and the cell tooltip; flash messages over the case title; the case
page's waterfall, attribution table and side panel at 1280 and 1920 px; derived clinical
values shown as derived; the worklist's search box and sortable columns.
Screenshots of the pages at 1280x800 and 1920x1080 go to $LADDER_E2E_SHOTS (default: a
temporary folder)."""
from __future__ import annotations

import re

import pytest

from tests.e2e.test_annotations import _open_demo_case, _stage
from tests.e2e.test_overlays import _open, _settle, analysed_case  # noqa: F401 (fixture)
from tests.e2e.test_pathologist_pages import SHOTS, SIZES, _login, _shots, _wait_jobs_done

pytestmark = pytest.mark.e2e


def _zooms(page) -> list[float]:
    return page.evaluate("() => window.caseViewer.panes.map(p => p.getView().zoom)")


def _wait_still(page):
    page.wait_for_function("""() => window.caseViewer.viewers.every(v => v.viewport.zoomSpring.isAtTargetValue()
        && v.viewport.centerSpringX.isAtTargetValue() && v.viewport.centerSpringY.isAtTargetValue())""", timeout=10000)


def test_double_click_closing_a_polygon_does_not_zoom(logged_in_page, live_site):
    page = logged_in_page
    config = _open_demo_case(page, live_site["url"])
    ihc = config["slides"][1]
    page.select_option("#an-slide", str(ihc["id"]))
    page.click(".an-buttons button[data-tool='polygon']")
    _wait_still(page)
    before = _zooms(page)
    box = _stage(page, 1)
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    vertices = [(cx - 90, cy - 60), (cx + 80, cy - 70), (cx + 100, cy + 50), (cx - 70, cy + 70)]
    for x, y in vertices[:-1]:
        page.mouse.move(x, y, steps=4)
        page.mouse.click(x, y)
        page.wait_for_timeout(350)  # separate clicks, not a double click
    page.mouse.move(*vertices[-1], steps=4)
    page.mouse.dblclick(*vertices[-1])
    page.wait_for_function("(id) => window.caseAnnotations.records().some(r => r.slide === id && r.shape === 'polygon')",
                           arg=ihc["id"], timeout=15000)
    record = page.evaluate("(id) => window.caseAnnotations.records().find(r => r.slide === id && r.shape === 'polygon')",
                           ihc["id"])
    try:
        page.wait_for_timeout(900)  # OpenSeadragon's zoom animation (0.6 s) would have run by now
        _wait_still(page)
        assert _zooms(page) == pytest.approx(before, rel=1e-9), "the double click closing the polygon zoomed"

        # with no tool active, a double click zooms as before
        page.wait_for_timeout(700)
        page.mouse.dblclick(cx + 150, cy + 120)
        page.wait_for_function("(z) => window.caseViewer.panes[1].getView().zoom > z * 1.5", arg=before[1],
                               timeout=10000)
    finally:  # the demo case is shared with the other modules
        csrf = page.evaluate("() => JSON.parse(document.getElementById('case-viewer-config').textContent).csrfToken")
        page.request.delete(f"{live_site['url']}/api/annotations/{record['id']}/", headers={"X-CSRFToken": csrf},
                            data={"version": record["version"]})


def test_magnification_keys_menu_escape_and_tooltip(analysed_case, logged_in_page, live_site):  # noqa: F811
    page = logged_in_page
    _open(page, live_site["url"])
    page.evaluate("() => window.caseDisplay.ready")
    magnification = "() => window.caseDisplay.magnification(0)"
    box = page.locator(".cv-pane[data-index='0'] .cv-stage").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)  # the H&E pane is active

    def press_and_wait(key, value):
        page.keyboard.press(key)
        page.wait_for_function(f"() => Math.abs(window.caseDisplay.magnification(0) - {value}) < 0.05", timeout=10000)

    # -- the help dialog closed with Esc gives the focus back: the keys 1-5 still work
    page.keyboard.press("Shift+Slash")
    assert page.is_visible(".cv-help-dialog")
    page.keyboard.press("Escape")
    assert page.is_hidden(".cv-help-dialog")
    assert page.evaluate("() => !document.activeElement.closest('[hidden]')"), "focus left on the hidden dialog"
    press_and_wait("3", 10)

    # -- the magnification menu: keys work with the focus inside it, '?' too, and Esc closes it
    toggle = page.locator(".cv-pane[data-index='0'] .cv-display-toggle")
    menu = page.locator(".cv-pane[data-index='0'] .cv-display")
    toggle.click()
    page.click(".cv-pane[data-index='0'] .cv-display button[data-magnification='5']")
    page.wait_for_function("() => Math.abs(window.caseDisplay.magnification(0) - 5) < 0.05", timeout=10000)
    press_and_wait("4", 20)  # focus on the 5x button in the menu
    page.keyboard.press("Shift+Slash")
    assert page.is_visible(".cv-help-dialog"), "'?' did nothing from inside the menu"
    page.keyboard.press("Escape")
    assert page.is_hidden(".cv-help-dialog") and menu.is_visible(), "one Esc closes one thing"
    press_and_wait("2", 5)
    page.keyboard.press("Escape")
    assert menu.is_hidden(), "Esc did not close the magnification menu"
    assert toggle.get_attribute("aria-expanded") == "false"
    assert page.evaluate("() => document.activeElement.classList.contains('cv-display-toggle')")
    toggle.click()  # opened with the mouse, focus on the toggle: Esc closes it too
    assert menu.is_visible()
    page.keyboard.press("Escape")
    assert menu.is_hidden()
    press_and_wait("3", 10)
    # the Layers panel does not swallow the keys either
    page.click(".cv-pane[data-index='0'] .ov-panel-toggle")
    press_and_wait("2", 5)
    page.click(".cv-pane[data-index='0'] .ov-panel-toggle")

    # -- the cell tooltip describes what is under the pointer now, or goes
    page.evaluate("() => window.caseOverlays.setVisible(0, 'cells', true)")
    page.evaluate("() => window.caseDisplay.setMagnification(0, 20)")
    _settle(page)
    tooltip = page.locator(".cv-pane[data-index='0'] .ov-tooltip")

    def hover_a_cell():
        point = page.evaluate("""() => { const o = window.caseOverlays.panes[0]; const c = o.records.get('cells').parsed;
            const r = o.viewer.element.getBoundingClientRect();
            for (let k = 0; k < c.count; k += 7) {
              const p = window.caseOverlays.recordScreenPoint(0, 'cells', {i: k});
              if (p && p.x > r.left + 80 && p.x < r.right - 80 && p.y > r.top + 80 && p.y < r.bottom - 80) return p;
            }
            return null; }""")
        assert point, "no cell in view"
        page.mouse.move(point["x"] - 3, point["y"] - 3)
        page.mouse.move(point["x"], point["y"])
        page.wait_for_function("() => !document.querySelector(\".cv-pane[data-index='0'] .ov-tooltip\").hidden",
                               timeout=5000)
        return tooltip.inner_text()

    first = hover_a_cell()
    page.evaluate("() => window.caseOverlays.setVisible(0, 'cells', false)")  # the layer goes: so does its tooltip
    page.wait_for_timeout(200)
    assert tooltip.is_hidden(), f"stale tooltip {first!r} over a hidden layer"
    page.evaluate("() => window.caseOverlays.setVisible(0, 'cells', true)")
    _settle(page)
    first = hover_a_cell()
    page.evaluate("() => window.caseViewer.panByPixels(90, 0)")  # the slide moves under the still pointer
    _settle(page)
    assert tooltip.is_hidden() or tooltip.inner_text() != first, f"stale tooltip {first!r} after the view moved"
    hover_a_cell()
    page.mouse.move(2, 2)  # out of the pane
    page.wait_for_timeout(200)
    assert tooltip.is_hidden()
    page.evaluate("() => window.caseOverlays.setVisible(0, 'cells', false)")


# What a flash message must never cover: headings, the slide viewer with its controls, and the
# side panel's cards (the clinical summary).
MESSAGE_COVERS_JS = """() => {
  const box = document.querySelector('.messages');
  if (!box) return null;
  const m = box.getBoundingClientRect();
  const hit = (r) => r.width > 0 && r.left < m.right && m.left < r.right && r.top < m.bottom && m.top < r.bottom;
  return [...document.querySelectorAll('main h1, main h2, main h3, .cv-toolbar, .cv-pane-bar, #case-viewer, .sidepanel .card, dl.clinical')]
    .filter((el) => hit(el.getBoundingClientRect()))
    .map((el) => el.tagName.toLowerCase() + '.' + String(el.className).split(' ')[0] + ': ' + el.textContent.trim().slice(0, 30));
}"""

# Words of the attribution table's names that wrap onto two lines (a name may wrap at its spaces
# and after a hyphen, never inside a word).
BROKEN_WORDS_JS = """() => [...document.querySelectorAll('table.attributions td:first-child')].flatMap((td) => {
  const broken = [];
  const walker = document.createTreeWalker(td, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const m of node.data.matchAll(/[^\\s-]+-?/g)) {
      const range = document.createRange();
      range.setStart(node, m.index);
      range.setEnd(node, m.index + m[0].length);
      const lines = new Set([...range.getClientRects()].filter((r) => r.width > 0).map((r) => Math.round(r.top)));
      if (lines.size > 1) broken.push(m[0]);
    }
  }
  return broken;
})"""

# The waterfall's axis title and names: inside the panel, the title ending where the axis ends
# (a title centred under the plot area runs past it, and off a narrow panel).
WATERFALL_JS = """() => {
  const plot = document.getElementById('plot-waterfall');
  const svg = plot.querySelector('.main-svg').getBoundingClientRect();
  const card = document.getElementById('score-card').getBoundingClientRect();
  const size = plot._fullLayout._size;
  const axisEnd = svg.left + size.l + size.w;
  const title = [...plot.querySelectorAll('text')].find((t) => t.textContent === 'HER2-LADDER score');
  const r = title.getBoundingClientRect();
  const ticks = [...plot.querySelectorAll('.ytick text')].filter((t) => {
    const b = t.getBoundingClientRect(); return b.left < svg.left - 0.5 || b.right > svg.right + 0.5; });
  const key = plot.querySelector('.gtitle');
  return {title: [r.left, r.right], axisEnd, svg: [svg.left, svg.right], card: [card.left, card.right],
          colourKey: key ? key.textContent : '', keyInside: key ? key.getBoundingClientRect().right <= card.right : false,
          clippedTicks: ticks.map((t) => t.textContent),
          // names shortened with "…" (they wrap onto two lines instead), and tick labels overlapping
          shortened: [...plot.querySelectorAll('.ytick text')].map((t) => t.textContent).filter((t) => t.includes('…')),
          overlapping: [...plot.querySelectorAll('.ytick text')].map((t) => t.getBoundingClientRect())
            .sort((a, b) => a.top - b.top).some((r, i, all) => i > 0 && r.top < all[i - 1].bottom - 1)};
}"""


def test_messages_case_page_layout_form_and_worklist(analysed_case, browser, live_site):  # noqa: F811
    url = live_site["url"]
    context, page, errors = _login(browser, live_site, "pathologist")
    try:
        # -- worklist: the search box shows its whole placeholder; Age, Stage and HR sort
        fits = page.evaluate("""() => { const input = document.querySelector('input[name=q]');
            const style = getComputedStyle(input); const ctx = document.createElement('canvas').getContext('2d');
            ctx.font = style.font;
            const room = input.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
            return [ctx.measureText(input.placeholder).width, room]; }""")
        assert fits[0] <= fits[1], f"placeholder {fits[0]:.0f} px in {fits[1]:.0f} px: clipped"
        for column, key in (("Age", "age"), ("Stage", "stage"), ("HR", "hr")):
            page.click(f"table.worklist th >> a:text-is('{column}')")
            page.wait_for_url(re.compile(rf".*sort={key}$"))
            assert page.get_attribute("th[aria-sort]", "aria-sort") == "ascending"
            page.click(f"table.worklist th >> a:text-is('{column}')")
            page.wait_for_url(re.compile(rf".*sort=-{key}$"))
            assert page.get_attribute("th[aria-sort]", "aria-sort") == "descending"
        _shots(page, "worklist")

        # -- the case form: derived values say so as T/N and ER/PR change; a contradicting stage is flagged
        page.goto(f"{url}/cases/new/")
        page.fill("#id_case_id", "E2E-WALK-1")
        page.select_option("#id_clinical_t", "T2")
        page.select_option("#id_clinical_n", "N1")
        page.select_option("#id_er_status", "negative")
        page.select_option("#id_pr_status", "positive")
        assert page.inner_text("#id_clinical_stage option[value='']") == "derived: II (IIB)"
        assert page.inner_text("#id_hr_status option[value='']") == "derived: positive"
        page.select_option("#id_clinical_n", "N2")
        assert page.inner_text("#id_clinical_stage option[value='']") == "derived: III (IIIA)"
        page.select_option("#id_clinical_stage", "I")
        assert "Stage I contradicts T2 N2" in page.inner_text("#stage-contradiction")
        _shots(page, "case-form")
        page.click("#case-form button[type=submit]")
        assert "Stage I contradicts T2 N2, which is stage III" in page.inner_text(".field-clinical_stage .field-error")
        page.check("#id_confirm_stage")
        page.click("#case-form button[type=submit]")
        page.wait_for_url("**/cases/E2E-WALK-1/")
        assert page.inner_text("#clinical-stage") == "I (entered; T2 N2 gives IIIA)"
        assert "(HR derived)" in page.inner_text("#clinical-receptors")
        # no slides: the score card says what the score needs, not that it is being recomputed
        assert "an H&E slide (none added yet) and a HER2 IHC slide (none added yet)" in page.inner_text("#score-card")
        # the flash message is clear of the case title; its close button closes it
        assert page.evaluate(MESSAGE_COVERS_JS) == []
        page.click(".messages .message-close")
        assert page.locator(".messages").count() == 0

        # -- the demo case: the message is clear of the title and the viewer at both sizes, then goes
        page.goto(f"{url}/cases/DEMO-001/edit/")
        page.click("#case-form button[type=submit]")  # nothing changed: an info message
        page.wait_for_url("**/cases/DEMO-001/")
        page.wait_for_function("() => window.caseViewer !== undefined", timeout=60000)
        page.evaluate("() => window.caseViewer.ready")
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(300)
            assert page.evaluate(MESSAGE_COVERS_JS) == [], f"the message covers these at {width}x{height}"
        page.wait_for_selector(".messages", state="detached", timeout=15000)  # a confirmation goes by itself

        # -- the side panel, its waterfall and attribution table at both sizes
        panel = {}
        for width, height in SIZES:
            page.set_viewport_size({"width": width, "height": height})
            page.wait_for_timeout(600)  # Plotly relayouts on resize
            panel[width] = page.locator(".sidepanel").bounding_box()["width"]
            assert page.evaluate(BROKEN_WORDS_JS) == [], f"names broken inside a word at {width}x{height}"
            chart = page.evaluate(WATERFALL_JS)
            assert chart["clippedTicks"] == [], chart
            assert "raised the score" in chart["colourKey"] and "lowered it" in chart["colourKey"] and chart["keyInside"], chart
            assert chart["shortened"] == [] and not chart["overlapping"], chart  # whole names at 1280 too
            left, right = chart["title"]
            assert right <= chart["axisEnd"] + 1 and left >= chart["svg"][0] and right <= chart["card"][1], chart
            page.screenshot(path=str(SHOTS / f"case-{width}x{height}.png"))
            # the Layers panel, opened with a layer and its legend showing, leaves most of the pane to the slide
            page.click(".cv-pane[data-index='0'] .ov-panel-toggle")
            page.evaluate("() => window.caseOverlays.setVisible(0, 'cells', true)")
            page.wait_for_timeout(300)
            cover = page.evaluate("""() => { const pane = document.querySelector(".cv-pane[data-index='0'] .cv-stage")
                  .getBoundingClientRect(); const box = document.querySelector(".cv-pane[data-index='0'] .ov-panel")
                  .getBoundingClientRect(); return (box.width * box.height) / (pane.width * pane.height); }""")
            page.screenshot(path=str(SHOTS / f"case-layers-{width}x{height}.png"))
            page.evaluate("() => window.caseOverlays.setVisible(0, 'cells', false)")
            page.click(".cv-pane[data-index='0'] .ov-panel-toggle")
            # 57 % at 1280x800 before the narrow-pane layout (static/viewer/overlays.css), 32 % after
            assert cover <= 0.4, f"the opened Layers panel covers {cover:.0%} of the pane at {width}x{height}"
        assert panel[1280] == pytest.approx(340, abs=1)
        assert panel[1920] >= 440, f"the side panel stays {panel[1920]:.0f} px wide on a 1920 px screen"
    finally:
        context.close()
    assert errors == [], errors


def test_a_finished_job_offers_its_results_and_keeps_the_view(logged_in_page, live_site):
    """The case page said nothing when an analysis or a score finished: now it says so, and
    "Show the new results" reloads the page at the same place on the slide."""
    page, url = logged_in_page, live_site["url"]
    _open_demo_case(page, url)
    _wait_jobs_done(page)  # the demo's own analyses first: their end would show the note too
    page.reload(wait_until="domcontentloaded")
    _open_demo_case(page, url)
    case = page.evaluate("() => JSON.parse(document.getElementById('case-viewer-config').textContent).caseId")
    state = page.evaluate("""() => { const s = window.caseViewer.getState();
        const next = {center: {x: s.center.x + 300, y: s.center.y + 200}, zoom: s.zoom * 3, rotation: 0};
        window.caseViewer.setState(next, {animate: false}); return window.caseViewer.getState(); }""")
    csrf = next(c["value"] for c in page.context.cookies() if c["name"] == "csrftoken")
    headers = {"X-CSRFToken": csrf, "Content-Type": "application/json", "Referer": url}
    age = page.request.get(f"{url}/api/cases/{case}/").json()["age"]
    try:
        # a clinical edit re-scores the case: a score job runs in the server's worker
        changed = page.request.patch(f"{url}/api/cases/{case}/", headers=headers, data={"age": age + 1})
        assert changed.status == 200, changed.text()
        page.wait_for_selector("#page-stale", timeout=180000)
        assert "HER2-LADDER score finished" in page.inner_text("#page-stale")
        page.click("#page-stale button")
        page.wait_for_load_state("domcontentloaded")
        page.wait_for_function("window.caseViewer !== undefined", timeout=60000)
        page.evaluate("() => window.caseViewer.ready")
        page.wait_for_function("""(want) => { const s = window.caseViewer.getState();
            return Math.abs(s.zoom / want.zoom - 1) < 1e-3 && Math.abs(s.center.x - want.center.x) < 1; }""",
                               arg=state, timeout=15000)
        assert page.locator("#page-stale").count() == 0
    finally:
        page.request.patch(f"{url}/api/cases/{case}/", headers=headers, data={"age": age})
