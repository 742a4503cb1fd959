/* Charts of the public transparency report (anwang/transparency/pages.py, template
 * transparency/report.html), drawn with the vendored Apache ECharts from the page's
 * "transparency-data" JSON block; labels arrive translated. The same figures are in the
 * tables under each chart, so the page says everything without this script.
 * window.anwangTransparencyCharts lists what was drawn (1) or left empty (0).
 */
(function () {
  "use strict";

  var node = document.getElementById("transparency-data");
  if (!node || !window.echarts) return;
  var data;
  try { data = JSON.parse(node.textContent || "{}"); } catch (e) { return; }
  var texts = data.texts || {};
  var drawn = (window.anwangTransparencyCharts = {});
  var charts = [];

  function chart(id, option, empty) {
    var el = document.getElementById(id);
    if (!el) return;
    if (empty) {
      el.classList.add("tr-chart-empty");
      el.textContent = texts.no_data || "";
      drawn[id] = 0;
      return;
    }
    var c = window.echarts.init(el, null, { renderer: "canvas" });
    option.animation = false;  // a snapshot of figures, not a show
    c.setOption(option);
    charts.push(c);
    drawn[id] = 1;
  }

  // Searches and exports by reason: horizontal bars, so long reason names stay legible
  // on a phone.
  var s = data.searches || { reasons: [], searches: [], exports: [] };
  var rows = s.reasons.length;
  var count = { show: true, position: "right",
                formatter: function (p) { return p.value ? String(p.value) : ""; } };
  chart("chart-searches", {
    tooltip: { trigger: "axis", axisPointer: { type: "shadow" } },
    legend: { top: 0, data: [texts.searches, texts.exports] },
    grid: { left: 8, right: 24, top: 32, bottom: 8, containLabel: true },
    xAxis: { type: "value", minInterval: 1 },
    yAxis: { type: "category", data: s.reasons, inverse: true },
    series: [
      { name: texts.searches, type: "bar", data: s.searches, color: "#1d5fd1", label: count },
      { name: texts.exports, type: "bar", data: s.exports, color: "#e8a400", label: count }
    ]
  }, rows === 0);

  var hits = data.hits || [];
  chart("chart-hits", {
    tooltip: { trigger: "item", formatter: "{b}: {c} ({d}%)" },
    legend: { bottom: 0, type: "scroll" },
    series: [{
      name: texts.hits, type: "pie", radius: ["38%", "66%"], center: ["50%", "45%"],
      label: { formatter: "{c}" },
      data: hits
    }]
  }, hits.length === 0);

  window.addEventListener("resize", function () {
    charts.forEach(function (c) { c.resize(); });
  });
})();
