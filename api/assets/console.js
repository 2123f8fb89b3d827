// Drover console: draws the overview's chart (uPlot) from the JSON the page carries.
(function () {
  function draw() {
    var holder = document.getElementById("throughput-chart");
    var data = document.getElementById("throughput-data");
    if (!holder || !data || typeof uPlot === "undefined") return;
    var kinds = JSON.parse(data.textContent);
    var first = kinds.find(function (k) { return k.t.length > 0; });
    if (!first) {
      holder.textContent = "No samples yet: the API samples each kind's totals once a minute.";
      return;
    }
    var series = [{}];
    var columns = [first.t];
    var colors = { sync: "#2b6cb0", backfill: "#2f855a", cleanup: "#805ad5" };
    kinds.forEach(function (k) {
      if (k.t.length !== first.t.length) return;
      series.push({ label: k.kind + " succeeded", stroke: colors[k.kind] || "#333", width: 2 });
      columns.push(k.succeeded);
      series.push({ label: k.kind + " died", stroke: colors[k.kind] || "#333", dash: [6, 4], width: 1 });
      columns.push(k.died);
    });
    holder.textContent = "";
    new uPlot({ width: Math.min(holder.clientWidth || 800, 1100), height: 260, series: series,
      axes: [{}, { label: "jobs per interval" }] }, columns, holder);
  }
  document.addEventListener("DOMContentLoaded", draw);
})();
