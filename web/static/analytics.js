/* The analytics dashboard's charts (Chart.js, vendored under /static/vendor). The figures are
   also in the tables under each chart and in the CSV links, so the page works without this. */
(function () {
  "use strict";
  var el = document.getElementById("analytics-data");
  if (!el || typeof window.Chart === "undefined") { return; }
  var data = JSON.parse(el.textContent);
  var palette = ["#1d4f91", "#1e7a3e", "#b42318", "#8a5a00", "#6941c6", "#0e7490", "#c2410c",
                 "#4d7c0f", "#be185d", "#475467"];
  var Chart = window.Chart;
  Chart.defaults.font.family = getComputedStyle(document.body).fontFamily;
  Chart.defaults.color = "#5f6b7a";
  Chart.defaults.animation = false;

  Array.prototype.forEach.call(document.querySelectorAll("canvas[data-chart]"), function (canvas) {
    var series = data[canvas.getAttribute("data-chart")];
    if (!series) { return; }
    var kind = canvas.getAttribute("data-kind");
    var round = kind === "doughnut";
    var cfg = {
      type: round ? "doughnut" : "bar",
      data: {
        labels: series.labels,
        datasets: [{
          label: data.labels.cases,
          data: series.values,
          backgroundColor: round ? palette : palette[0],
          borderWidth: round ? 1 : 0
        }]
      },
      options: {
        responsive: true,
        maintainAspectRatio: false,
        indexAxis: kind === "hbar" ? "y" : "x",
        plugins: { legend: { display: round, position: "bottom", labels: { boxWidth: 12 } } },
        scales: round ? {} : { x: { ticks: { precision: 0 } }, y: { ticks: { precision: 0 } } }
      }
    };
    canvas.setAttribute("data-ready", "true");
    new Chart(canvas, cfg);
  });
  document.body.setAttribute("data-charts", "drawn");
})();
