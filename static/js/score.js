// The attribution waterfall of the case's score (figure dict prepared by the server).
const figure = JSON.parse(document.getElementById("score-figures")?.textContent || "null");
const element = document.getElementById("plot-waterfall");
const FONT_PX = 11;  // the tick font (layout.font.size)
const LABEL_SHARE = 0.55;  // of the plot's width, at most, for the names; the rest for the bars
const MAX_LINES = 2;
const ROW_PX = { 1: 22, 2: 32 };  // a row's height for names of one or two lines
const MARGIN = { t: 36, r: 12, b: 46, l: 8 };

// The names are the short plain names ("H&E: tumour → lymphocyte mean edge"); the hover and the
// table below give the full name, unit and raw name. They wrap at spaces onto up to two lines to
// fit what LABEL_SHARE of the panel's width holds; Plotly's automargin widens the left margin to the
// longest line. Only a name longer than two lines is shortened (with "…"). The panel widens on
// wide screens, and the names take one line there.
let measure = null;
function textWidth(text) {
  if (!measure) {
    measure = document.createElement("canvas").getContext("2d");
    const family = window.getComputedStyle(element).fontFamily || "sans-serif";
    measure.font = `${FONT_PX}px "Open Sans", verdana, arial, ${family}`;
  }
  return measure.measureText(text).width;
}

function wrap(name, room) {
  const words = name.split(" ");
  const lines = [];
  let line = "";
  for (const word of words) {
    const next = line ? `${line} ${word}` : word;
    if (line && textWidth(next) > room) {
      lines.push(line);
      line = word;
    } else {
      line = next;
    }
  }
  lines.push(line);
  if (lines.length > MAX_LINES) {
    let last = lines.slice(MAX_LINES - 1).join(" ");
    while (last.length > 1 && textWidth(`${last}…`) > room) last = last.slice(0, -1).trimEnd();
    lines.splice(MAX_LINES - 1, lines.length, `${last}…`);
  }
  return lines;
}

function axisNames(width) {
  const names = figure.data[0]?.y || [];
  const room = Math.max(90, width * LABEL_SHARE);
  const wrapped = names.map((name) => wrap(name, room));
  const lines = Math.max(1, ...wrapped.map((l) => l.length));
  // "&" would start an entity in Plotly's text; the names have no other markup
  const ticktext = wrapped.map((l) => l.map((s) => s.replace(/&/g, "&amp;")).join("<br>"));
  return {
    axis: { tickmode: "array", tickvals: names, ticktext },
    height: MARGIN.t + MARGIN.b + names.length * ROW_PX[Math.min(lines, MAX_LINES)],
  };
}

if (figure && element && window.Plotly) {
  const names = axisNames(element.clientWidth);
  const layout = { height: names.height, font: { size: FONT_PX }, ...figure.layout };
  layout.margin = { ...MARGIN, ...figure.layout.margin };
  layout.yaxis = { ...layout.yaxis, automargin: true, ...names.axis };
  window.Plotly.newPlot(element, figure.data, layout, { displaylogo: false, responsive: true });
  let width = element.clientWidth;
  new ResizeObserver(() => {
    if (Math.abs(element.clientWidth - width) < 8) return;
    width = element.clientWidth;
    const next = axisNames(width);
    window.Plotly.relayout(element, { "yaxis.ticktext": next.axis.ticktext, height: next.height });
  }).observe(element);
}
