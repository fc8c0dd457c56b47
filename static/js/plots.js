// Draws the Plotly figure dicts the server prepared (analysis.core builds them).
const figures = JSON.parse(document.getElementById("model-figures")?.textContent || "{}");
for (const element of document.querySelectorAll(".plot[data-figure]")) {
  const figure = figures[element.dataset.figure];
  if (!figure) continue;
  const layout = { margin: { t: 40, r: 10, b: 50, l: 60 }, height: 340, font: { size: 12 }, ...figure.layout };
  window.Plotly.newPlot(element, figure.data, layout, { displaylogo: false, responsive: true });
}
