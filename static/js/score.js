// The attribution waterfall of the case's score (figure dict prepared by the server).
const figure = JSON.parse(document.getElementById("score-figures")?.textContent || "null");
const element = document.getElementById("plot-waterfall");
if (figure && element && window.Plotly) {
  const layout = { margin: { t: 36, r: 8, b: 40, l: 8 }, height: 380, font: { size: 11 }, ...figure.layout };
  window.Plotly.newPlot(element, figure.data, layout, { displaylogo: false, responsive: true });
}
