// The attribution waterfall of the case's score (figure dict prepared by the server).
const figure = JSON.parse(document.getElementById("score-figures")?.textContent || "null");
const element = document.getElementById("plot-waterfall");
const CHAR_PX = 6;  // about one character of the 11 px tick font

// Plain feature names can be too long for the side panel: the axis shows them shortened to what
// about 65 % of the plot's width holds (the hover and the table below give them whole), else
// Plotly clips them at the panel's left edge. The panel widens on wide screens, and so do they.
function axisNames(width) {
  const names = figure.data[0]?.y || [];
  const room = Math.min(48, Math.max(20, Math.floor((width * 0.65) / CHAR_PX)));
  const short = (name) => (name.length > room ? `${name.slice(0, room - 1).trimEnd()}…` : name);
  return { tickmode: "array", tickvals: names, ticktext: names.map(short) };
}

if (figure && element && window.Plotly) {
  const layout = { margin: { t: 36, r: 12, b: 40, l: 8 }, height: 380, font: { size: 11 }, ...figure.layout };
  layout.margin = { t: 36, r: 12, b: 40, l: 8, ...figure.layout.margin };
  layout.yaxis = { ...layout.yaxis, ...axisNames(element.clientWidth) };
  window.Plotly.newPlot(element, figure.data, layout, { displaylogo: false, responsive: true });
  let width = element.clientWidth;
  new ResizeObserver(() => {
    if (Math.abs(element.clientWidth - width) < 8) return;
    width = element.clientWidth;
    const names = axisNames(width);
    window.Plotly.relayout(element, { "yaxis.ticktext": names.ticktext });
  }).observe(element);
}
