// The attribution waterfall of the case's score (figure dict prepared by the server).
const figure = JSON.parse(document.getElementById("score-figures")?.textContent || "null");
const element = document.getElementById("plot-waterfall");
if (figure && element && window.Plotly) {
  const layout = { margin: { t: 36, r: 30, b: 40, l: 8 }, height: 380, font: { size: 11 }, ...figure.layout };
  // (r: 30 leaves room for the centred x-axis title under a narrow plot.)
  // Plain feature names are too long for the sidebar: the axis shows them shortened (the hover and
  // the table below give them whole), else Plotly clips them at the panel's left edge.
  const names = figure.data[0]?.y || [];
  const short = (name) => (name.length > 30 ? `${name.slice(0, 29).trimEnd()}…` : name);
  layout.yaxis = { ...layout.yaxis, tickmode: "array", tickvals: names, ticktext: names.map(short) };
  window.Plotly.newPlot(element, figure.data, layout, { displaylogo: false, responsive: true });
}
