"""Pixels and paper for the board record: captioned PNG snapshots and PDF case summaries.

Pure functions of their inputs (PIL images, plain dicts); the services read the slides and
the database and store what these return.
"""
from __future__ import annotations

import io
from datetime import datetime

from PIL import Image, ImageDraw, ImageFont

RESEARCH_STATEMENT = ("Research use only. Not a medical device; HER2-LADDER scores and risk groups are "
                      "not treatment recommendations.")
CAPTION_BG = (21, 25, 30)
CAPTION_INK = (240, 242, 245)
CAPTION_MUTED = (170, 178, 189)
SCALE_BAR_LENGTHS_UM = [m * 10 ** e for e in range(-1, 5) for m in (1, 2, 5)]


def _font(size: int) -> ImageFont.ImageFont:
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


def snapshot_compose(*, region: Image.Image, overlay: Image.Image | None, caption: str, subtitle: str,
                     um_per_px: float | None = None, overlay_opacity: float = 1.0) -> Image.Image:
    """Slide region + overlay (RGBA, same size) + scale bar + a caption strip below."""
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
    probe = ImageDraw.Draw(view)
    title_font, small_font = _font(max(14, view.width // 45)), _font(max(11, view.width // 80))
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


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", optimize=False, compress_level=6)
    return buffer.getvalue()


def _latin1(text) -> str:
    """The PDF's standard fonts speak WinAnsi: replace what they cannot draw."""
    text = str(text if text is not None else "")
    for src, dst in (("\u0394", "delta "), ("\u2265", ">="), ("\u2264", "<="), ("\u2192", "->"), ("\u2212", "-")):
        text = text.replace(src, dst)
    return text.encode("cp1252", errors="replace").decode("cp1252")


def summary_pdf(*, title: str, case: dict, score: dict | None, thumbnails: list[tuple[str, Image.Image]],
                reviews: list[dict] | None, annotations: list[dict] | None, snapshots: list[tuple[str, Image.Image]],
                made_by: str, made_at: datetime) -> bytes:
    """The board record of one case as PDF bytes (reportlab).

    case: {"case_id", "rows": [(label, value)]}; score: {"score", "risk_group", "implication",
    "probability_pcr", "model", "status", "message", "attributions": [{feature, value, score_attribution}]};
    reviews/annotations: None when the review module is not there, else lists of {"text"}.
    """
    from reportlab.lib import colors
    from reportlab.lib.pagesizes import A4
    from reportlab.lib.styles import getSampleStyleSheet
    from reportlab.lib.units import mm
    from reportlab.platypus import Image as PdfImage
    from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

    styles = getSampleStyleSheet()
    body, small = styles["BodyText"], styles["BodyText"].clone("small", fontSize=8, leading=10)
    p = lambda text, style=body: Paragraph(_escape(_latin1(text)), style)  # noqa: E731
    story = [Paragraph(_escape(_latin1(title)), styles["Title"]),
             p(f"Board record made by {made_by} on {made_at:%Y-%m-%d %H:%M} UTC", small),
             Spacer(1, 4 * mm), Paragraph("Clinical summary", styles["Heading2"])]
    grid = TableStyle([("FONTSIZE", (0, 0), (-1, -1), 9), ("GRID", (0, 0), (-1, -1), 0.25, colors.lightgrey),
                       ("VALIGN", (0, 0), (-1, -1), "TOP")])
    story.append(Table([[_latin1(k), _latin1(v)] for k, v in case["rows"]], colWidths=[45 * mm, 120 * mm],
                       style=grid, hAlign="LEFT"))
    story += [Spacer(1, 4 * mm), Paragraph("HER2-LADDER score", styles["Heading2"])]
    if score is None:
        story.append(p("Not scored."))
    elif score.get("status") != "scored":
        story.append(p(f"Not scored: {score.get('message', '')}"))
    else:
        story.append(Paragraph(f"<b>Score {score['score']:.0f} &middot; {_escape(score['risk_group'])} risk</b> "
                               f"&middot; P(pCR) = {score['probability_pcr']:.2f}", body))
        story.append(p(f"Implication (study): {score.get('implication', '')}"))
        story.append(p(f"Model: {score.get('model', '')}", small))
        if score.get("attributions"):
            rows = [["Input", "Value", "Change of score"]] + [
                [_latin1(r["feature"]), "imputed" if r.get("imputed") else _fmt(r.get("value")),
                 f"{r.get('score_attribution', 0):+.1f}"] for r in score["attributions"]]
            story.append(Table(rows, colWidths=[80 * mm, 40 * mm, 40 * mm], hAlign="LEFT",
                               style=TableStyle(grid.getCommands() + [("BACKGROUND", (0, 0), (-1, 0), colors.whitesmoke)])))
    if thumbnails:
        story += [Spacer(1, 4 * mm), Paragraph("Slides", styles["Heading2"])]
        cells = []
        for label, image in thumbnails:
            w, h = image.size
            scale = min(80 * mm / w, 80 * mm / h)
            cells.append([PdfImage(_jpeg(image), width=w * scale, height=h * scale), p(label, small)])
        story.append(Table([[c[0] for c in cells], [c[1] for c in cells]], hAlign="LEFT"))
    story += [Spacer(1, 4 * mm), Paragraph("Reviews", styles["Heading2"])]
    if not reviews:
        story.append(p("No reviews."))
    else:
        story += [p("- " + r["text"]) for r in reviews]
    story += [Paragraph("Annotations", styles["Heading2"])]
    if not annotations:
        story.append(p("No annotations."))
    else:
        story += [p("- " + a["text"]) for a in annotations]
    if snapshots:
        story += [Spacer(1, 4 * mm), Paragraph("Snapshots shown at the board", styles["Heading2"])]
        for caption, image in snapshots:
            w, h = image.size
            scale = min(165 * mm / w, 110 * mm / h)
            story += [PdfImage(_jpeg(image), width=w * scale, height=h * scale),
                      p(caption, small), Spacer(1, 2 * mm)]

    def footer(canvas, doc):
        canvas.saveState()
        canvas.setFont("Helvetica", 7.5)
        canvas.setFillColor(colors.HexColor("#6b4e00"))
        canvas.drawString(15 * mm, 10 * mm, RESEARCH_STATEMENT)
        canvas.drawRightString(195 * mm, 10 * mm, f"page {doc.page}")
        canvas.restoreState()

    buffer = io.BytesIO()
    doc = SimpleDocTemplate(buffer, pagesize=A4, leftMargin=15 * mm, rightMargin=15 * mm, topMargin=15 * mm,
                            bottomMargin=18 * mm, title=_latin1(title), author="HER2-LADDER viewer")
    story.insert(1, p(RESEARCH_STATEMENT, small))
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
