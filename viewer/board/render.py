"""Pixels and paper for the board record: captioned PNG snapshots and PDF case summaries.

Pure functions of their inputs (PIL images, plain dicts); the services read the slides and
the database and store what these return.
"""
from __future__ import annotations

import io
import os
from datetime import datetime
from functools import lru_cache

from PIL import Image, ImageDraw, ImageFont

RESEARCH_STATEMENT = ("Research use only. Not a medical device; HER2-LADDER scores and risk groups are "
                      "not treatment recommendations.")
CAPTION_BG = (21, 25, 30)
CAPTION_INK = (240, 242, 245)
CAPTION_MUTED = (170, 178, 189)
SCALE_BAR_LENGTHS_UM = [m * 10 ** e for e in range(-1, 5) for m in (1, 2, 5)]


# Captions say "–", "µm", "×" and "→": Pillow's built-in font draws those as empty boxes. A
# TrueType font that has them is looked up at run time: fontconfig first (Debian's fonts-dejavu),
# then known paths, then the DejaVu copy matplotlib ships; Pillow's default only as the last resort.
FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
    "/System/Library/Fonts/Supplemental/Arial Unicode.ttf",
    "C:/Windows/Fonts/arial.ttf",
)
REQUIRED_GLYPHS = "–µ×→"


def _fc_match(family: str) -> str | None:
    import shutil
    import subprocess

    if not shutil.which("fc-match"):
        return None
    try:
        done = subprocess.run(["fc-match", "-f", "%{file}", f"{family}:charset=2013 b5 d7"], capture_output=True,
                              text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() or None


def _has_glyphs(path: str, text: str = REQUIRED_GLYPHS) -> bool:
    try:
        from fontTools.ttLib import TTFont

        with TTFont(path, lazy=True, fontNumber=0) as font:
            cmap = font.getBestCmap() or {}
        return all(ord(ch) in cmap for ch in text)
    except ImportError:  # no fontTools: trust the file
        return True
    except Exception:  # noqa: BLE001 - an unreadable font is just not a candidate
        return False


@lru_cache(maxsize=1)
def font_path() -> str | None:
    """A TrueType font file with the glyphs our captions use, or None (Pillow's default then)."""
    candidates = [_fc_match("DejaVu Sans"), *FONT_CANDIDATES]
    try:
        import matplotlib

        candidates.append(os.path.join(os.path.dirname(matplotlib.__file__), "mpl-data", "fonts", "ttf",
                                       "DejaVuSans.ttf"))
    except ImportError:
        pass
    for path in candidates:
        if path and os.path.isfile(path) and _has_glyphs(path):
            return path
    return None


def _font(size: int) -> ImageFont.ImageFont:
    path = font_path()
    if path:
        try:
            return ImageFont.truetype(path, size=size)
        except OSError:
            pass
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow without FreeType
        return ImageFont.load_default()


def _wrap(draw: ImageDraw.ImageDraw, text: str, font, width: int) -> list[str]:
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        words, line = paragraph.split(), ""
        for word in words:
            trial = f"{line} {word}".strip()
            if draw.textlength(trial, font=font) <= width or not line:
                line = trial
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def _scale_bar(image: Image.Image, *, um_per_px: float) -> None:
    """The longest round length (1, 2, 5 x 10^k um) under a fifth of the width, bottom left."""
    max_px = image.width / 5
    fitting = [length for length in SCALE_BAR_LENGTHS_UM if length / um_per_px <= max_px]
    if not fitting:
        return
    length = fitting[-1]
    bar = round(length / um_per_px)
    label = f"{length / 1000:g} mm" if length >= 1000 else f"{length:g} \u00b5m"
    draw = ImageDraw.Draw(image)
    font = _font(max(11, image.width // 70))
    x0, y1 = 12, image.height - 12
    text_h = draw.textbbox((0, 0), label, font=font)[3]
    draw.rectangle((x0 - 6, y1 - text_h - 18, x0 + max(bar, draw.textlength(label, font=font)) + 6, y1 + 4),
                   fill=(255, 255, 255))
    draw.rectangle((x0, y1 - 5, x0 + bar, y1), fill=(0, 0, 0))
    draw.text((x0, y1 - text_h - 12), label, fill=(0, 0, 0), font=font)


def pane_view(*, region: Image.Image, overlay: Image.Image | None, um_per_px: float | None = None,
              overlay_opacity: float = 1.0) -> Image.Image:
    """One pane as the presenter saw it: slide region + overlay (RGBA, same size) + scale bar."""
    view = region.convert("RGBA")
    if overlay is not None:
        layer = overlay.convert("RGBA")
        if layer.size != view.size:
            layer = layer.resize(view.size, Image.Resampling.NEAREST)
        if overlay_opacity < 1.0:
            alpha = layer.getchannel("A").point(lambda a: round(a * max(0.0, overlay_opacity)))
            layer.putalpha(alpha)
        view = Image.alpha_composite(view, layer)
    view = view.convert("RGB")
    if um_per_px:
        _scale_bar(view, um_per_px=um_per_px)
    return view


def panes_side_by_side(views: list[tuple[str, Image.Image]], *, gap: int = 6) -> Image.Image:
    """Panes left to right (as the paired viewer shows them), each labelled top left, on the
    caption colour; panes of different heights are top-aligned."""
    if len(views) == 1:
        return views[0][1]
    width = sum(v.width for _, v in views) + gap * (len(views) - 1)
    height = max(v.height for _, v in views)
    out = Image.new("RGB", (width, height), CAPTION_BG)
    draw = ImageDraw.Draw(out)
    x = 0
    for label, view in views:
        out.paste(view, (x, 0))
        if label:
            font = _font(max(12, view.width // 50))
            box = draw.textbbox((x + 8, 8), label, font=font)
            draw.rectangle((box[0] - 5, box[1] - 4, box[2] + 5, box[3] + 4), fill=(255, 255, 255))
            draw.text((x + 8, 8), label, fill=(0, 0, 0), font=font)
        x += view.width + gap
    return out


def caption_below(view: Image.Image, *, caption: str, subtitle: str) -> Image.Image:
    """The view with a caption strip below: title, subtitle and the research-use statement."""
    probe = ImageDraw.Draw(view)
    title_font, small_font = _font(max(14, min(view.width, 1600) // 45)), _font(max(11, min(view.width, 1600) // 80))
    pad = max(8, view.width // 100)
    title_lines = _wrap(probe, caption, title_font, view.width - 2 * pad) if caption else []
    small_lines = _wrap(probe, subtitle, small_font, view.width - 2 * pad) + _wrap(
        probe, RESEARCH_STATEMENT, small_font, view.width - 2 * pad)
    line_h = lambda font: probe.textbbox((0, 0), "Hg", font=font)[3] + 4  # noqa: E731
    strip = 2 * pad + len(title_lines) * line_h(title_font) + len(small_lines) * line_h(small_font)
    out = Image.new("RGB", (view.width, view.height + strip), CAPTION_BG)
    out.paste(view, (0, 0))
    draw = ImageDraw.Draw(out)
    y = view.height + pad
    for line in title_lines:
        draw.text((pad, y), line, fill=CAPTION_INK, font=title_font)
        y += line_h(title_font)
    for line in small_lines:
        draw.text((pad, y), line, fill=CAPTION_MUTED, font=small_font)
        y += line_h(small_font)
    return out


def snapshot_compose(*, region: Image.Image, overlay: Image.Image | None, caption: str, subtitle: str,
                     um_per_px: float | None = None, overlay_opacity: float = 1.0) -> Image.Image:
    """Slide region + overlay (RGBA, same size) + scale bar + a caption strip below."""
    view = pane_view(region=region, overlay=overlay, um_per_px=um_per_px, overlay_opacity=overlay_opacity)
    return caption_below(view, caption=caption, subtitle=subtitle)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def _latin1(text) -> str:
    """The PDF's standard fonts speak WinAnsi: replace what they cannot draw (used only when no
    TrueType font is found; with one, text goes in as it is)."""
    text = str(text if text is not None else "")
    for src, dst in (("\u0394", "delta "), ("\u2265", ">="), ("\u2264", "<="), ("\u2192", "->"), ("\u2212", "-")):
        text = text.replace(src, dst)
    return text.encode("cp1252", errors="replace").decode("cp1252")


@lru_cache(maxsize=1)
def _pdf_fonts() -> tuple[str, str, bool]:
    """(regular, bold, unicode): DejaVu (or whichever font_path() found) registered with
    reportlab, so µ, ×, – and → print; Helvetica (WinAnsi) otherwise."""
    path = font_path()
    if path:
        try:
            from reportlab.pdfbase import pdfmetrics
            from reportlab.pdfbase.ttfonts import TTFont

            bold = path.replace("DejaVuSans.ttf", "DejaVuSans-Bold.ttf")
            pdfmetrics.registerFont(TTFont("LadderSans", path))
            pdfmetrics.registerFont(TTFont("LadderSans-Bold", bold if os.path.isfile(bold) else path))
            from reportlab.lib.fonts import addMapping

            addMapping("LadderSans", 0, 0, "LadderSans")
            addMapping("LadderSans", 1, 0, "LadderSans-Bold")
            addMapping("LadderSans", 0, 1, "LadderSans")
            addMapping("LadderSans", 1, 1, "LadderSans-Bold")
            # tables use the condensed cut when there is one: dense columns without broken words
            for name, file in (("LadderSansCond", "DejaVuSansCondensed.ttf"),
                               ("LadderSansCond-Bold", "DejaVuSansCondensed-Bold.ttf")):
                candidate = os.path.join(os.path.dirname(path), file)
                pdfmetrics.registerFont(TTFont(name, candidate if os.path.isfile(candidate) else path))
            return "LadderSans", "LadderSans-Bold", True
        except Exception:  # noqa: BLE001 - a font reportlab cannot embed: fall back to Helvetica
            pass
    return "Helvetica", "Helvetica-Bold", False


def summary_pdf(*, title: str, case: dict, score: dict | None, thumbnails: list[tuple[str, Image.Image]],
                reviews: list[dict] | None, annotations: list[dict] | None, snapshots: list[tuple[str, Image.Image]],
                made_by: str, made_at: datetime, board: str = "") -> bytes:
    """The board record of one case as PDF bytes (reportlab): a record a tumour board files.

    case: {"case_id", "rows": [(label, value)]}; score: {"score", "risk_group", "implication",
    "probability_pcr", "model", "status", "message", "attributions": [{feature, label_text?,
    display_value?, value, score_attribution}]}; reviews: [{"reviewer", "call", "risk_group",
    "expected", "her2", "ish", "confidence", "status", "saved", "comment"}]; annotations:
    [{"slide", "label", "shape", "author", "comment", "updated"}] (times already local, to the
    minute). `board`: the session's title, named on the line under the title. `made_at` is shown
    in the current time zone (settings.TIME_ZONE). Headings are kept
    with what follows them; tables repeat their header row on a new page.
    """
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.pdfbase import pdfmetrics
    from reportlab.platypus import Image as PdfImage
    from reportlab.platypus import KeepTogether, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    regular, bold, unicode_ok = _pdf_fonts()
    clean = (lambda text: str(text if text is not None else "")) if unicode_ok else _latin1
    styles = getSampleStyleSheet()
    for name in ("BodyText", "Title", "Heading2", "Heading3"):
        styles[name].fontName = bold if name != "BodyText" else regular
    body = styles["BodyText"]
    small = body.clone("small", fontSize=8, leading=10)
    condensed = unicode_ok and "LadderSansCond" in pdfmetrics.getRegisteredFontNames()
    cell = body.clone("cell", fontSize=8.5, leading=10.5, spaceBefore=0, spaceAfter=0,
                      fontName="LadderSansCond" if condensed else regular)
    head_cell = cell.clone("headcell", fontName="LadderSansCond-Bold" if condensed else bold,
                           textColor=colors.HexColor("#333333"))
    h2 = styles["Heading2"].clone("h2", keepWithNext=1, spaceBefore=8)
    p = lambda text, style=body: Paragraph(_escape(clean(text)), style)  # noqa: E731

    def heading(text: str, first):
        """A heading never stranded at a page bottom: kept together with its first block."""
        return KeepTogether([Paragraph(_escape(clean(text)), h2), *([first] if not isinstance(first, list) else first)])

    def table(header: list[str], rows: list[list], widths: list[float], extra: list | None = None) -> Table:
        data = [[Paragraph(_escape(clean(h)), head_cell) for h in header]]
        data += [[c if not isinstance(c, str) else Paragraph(_escape(clean(c)), cell) for c in row] for row in rows]
        style = [("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#c8ccd2")),
                 ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#eef0f3")),
                 ("VALIGN", (0, 0), (-1, -1), "TOP"),
                 ("TOPPADDING", (0, 0), (-1, -1), 2), ("BOTTOMPADDING", (0, 0), (-1, -1), 3)]
        return Table(data, colWidths=widths, repeatRows=1, hAlign="LEFT", style=TableStyle(style + (extra or [])))

    made = f"{made_at:%Y-%m-%d %H:%M %Z}".strip()
    story = [Paragraph(_escape(clean(title)), styles["Title"]), p(RESEARCH_STATEMENT, small),
             p(f"Board record{f' of {board},' if board else ''} made by {made_by} on {made}", small),
             Spacer(1, 3 * mm)]
    story.append(heading("Clinical summary", table(["Item", "Value"], [[clean(k), clean(v)] for k, v in case["rows"]],
                                                   [45 * mm, 135 * mm])))
    if score is None:
        score_block = [p("Not scored.")]
    elif score.get("status") != "scored":
        score_block = [p(f"Not scored: {score.get('message', '')}")]
    else:
        score_block = [Paragraph(f"<b>Score {score['score']:.0f} · {_escape(clean(score['risk_group']))} risk</b>"
                                 f" · P(pCR) = {score['probability_pcr']:.2f}", body),
                       p(f"Implication (study, research use): {score.get('implication', '')}"),
                       p(f"Model: {score.get('model', '')}", small)]
        if score.get("attributions"):
            rows = [[r.get("label_text") or r["feature"],
                     r.get("display_value") or ("imputed" if r.get("imputed") else _fmt(r.get("value"))),
                     f"{r.get('score_attribution', 0):+.1f}"] for r in score["attributions"]]
            score_block.append(table(["Input", "Value", "Change of score"], rows, [120 * mm, 30 * mm, 30 * mm]))
    story.append(heading("HER2-LADDER score", score_block))
    if thumbnails:
        cells = []
        for label, image in thumbnails:
            w, h = image.size
            scale = min(85 * mm / w, 70 * mm / h)
            cells.append([PdfImage(_jpeg(image), width=w * scale, height=h * scale), p(label, small)])
        story.append(heading("Slides", Table([[c[0] for c in cells], [c[1] for c in cells]], hAlign="LEFT")))
    if not reviews:
        story.append(heading("Reviews", p("No reviews.")))
    else:
        rows, extra = [], []
        for r in reviews:
            rows.append([r.get("reviewer", ""), r.get("call", ""), r.get("risk_group") or "–", r.get("expected") or "–",
                         r.get("her2") or "–", r.get("ish") or "–", r.get("confidence") or "–", r.get("status", ""),
                         r.get("saved", "")])
            if r.get("comment"):  # the comment once, on a full-width row under its review
                rows.append([Paragraph(f"<i>Comment:</i> {_escape(clean(r['comment']))}", cell)] + [""] * 8)
                extra.append(("SPAN", (0, len(rows)), (-1, len(rows))))
        widths = [20 * mm, 23 * mm, 15 * mm, 19 * mm, 19 * mm, 20 * mm, 13 * mm, 21 * mm, 30 * mm]
        story.append(heading("Reviews", table(["Reviewer", "Risk group call", "Thinks", "Expects", "HER2 (auto)",
                                               "ISH", "Conf.", "Status", "Saved"], rows, widths, extra)))
    if not annotations:
        story.append(heading("Annotations", p("No annotations.")))
    else:
        rows = [[a.get("slide", ""), a.get("label", ""), a.get("shape", ""), a.get("author", ""),
                 a.get("comment") or "–", a.get("updated", "")] for a in annotations]
        story.append(heading("Annotations", table(["Slide", "Label", "Shape", "Author", "Comment", "Last change"],
                                                  rows, [18 * mm, 26 * mm, 18 * mm, 22 * mm, 64 * mm, 32 * mm])))
    if snapshots:
        blocks = []
        for caption, image in snapshots:
            w, h = image.size
            scale = min(180 * mm / w, 110 * mm / h)
            blocks.append(KeepTogether([PdfImage(_jpeg(image), width=w * scale, height=h * scale), p(caption, small),
                                        Spacer(1, 2 * mm)]))
        story.append(heading("Snapshots shown at the board", blocks[0]))
        story += blocks[1:]

    def footer(canvas, doc):
        canvas.saveState()
        canvas.setFont(regular, 7.5)
        canvas.setFillColor(colors.HexColor("#6b4e00"))
        canvas.drawString(15 * mm, 10 * mm, clean(RESEARCH_STATEMENT))
        canvas.drawRightString(195 * mm, 10 * mm, f"page {doc.page}")
        canvas.restoreState()

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm,
                            bottomMargin=18 * mm, title=clean(title), author="HER2-LADDER viewer")
    doc.build(story, onFirstPage=footer, onLaterPages=footer)
    return buffer.getvalue()


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    return _latin1(value)


def _jpeg(image: Image.Image) -> io.BytesIO:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="JPEG", quality=88)
    buffer.seek(0)
    return buffer
