/* Charts of the alert statistics page (anwang/alerts/pages.py, template alerts/stats.html)
 * drawn with the vendored Apache ECharts. The figures come from the page's
 * "alert-stats-data" JSON block, computed by anwang.alerts.service.statistics; the
 * labels are already translated there. window.anwangAlertCharts lists what was drawn
 * (the tests read it).
 */
(function () {
  "use strict";

  var node = document.getElementById("alert-stats-data");
  if (!node || !window.echarts) return;
  var data;
  try { data = JSON.parse(node.textContent || "{}"); } catch (e) { return; }
  var figures = data.figures || {};
  var texts = data.texts || {};
  var drawn = (window.anwangAlertCharts = {});
  var charts = [];

  function chart(id, option, empty) {
    var el = document.getElementById(id);
    if (!el) return;
    if (empty) {
      el.classList.add("chart-empty");
      el.textContent = texts.no_data || "";
      drawn[id] = 0;
      return;
    }
    var c = window.echarts.init(el, null, { renderer: "canvas" });
    option.animation = false;  // drawn at once: the figures are a snapshot, not a show
    c.setOption(option);
    charts.push(c);
    drawn[id] = 1;
  }

  var reasons = figures.hits_by_reason || {};
  var reasonKeys = Object.keys(reasons).sort(function (a, b) { return reasons[b] - reasons[a]; });
  chart("chart-reasons", {
    tooltip: { trigger: "item" },
    series: [{
      type: "pie", radius: ["35%", "70%"],
      data: reasonKeys.map(function (k) {
        return { name: (texts.reasons || {})[k] || k, value: reasons[k] };
      })
    }]
  }, reasonKeys.length === 0);

  var rows = figures.outcomes_by_checkpoint || [];
  var outcomeKeys = Object.keys(texts.outcomes || {});
  chart("chart-outcomes", {
    tooltip: { trigger: "axis" },
    legend: { bottom: 0, type: "scroll" },
    grid: { left: 40, right: 48, bottom: 80, top: 30 },
    xAxis: { type: "category", data: rows.map(function (r) { return r.name || r.checkpoint; }),
             axisLabel: { rotate: 30 } },
    yAxis: [{ type: "value", name: texts.alerts || "" },
            { type: "value", name: texts.misread_rate || "", max: 100,
              axisLabel: { formatter: "{value}%" } }],
    series: outcomeKeys.map(function (k) {
      return { name: texts.outcomes[k], type: "bar", stack: "outcomes",
               data: rows.map(function (r) { return r[k] || 0; }) };
    }).concat([{
      name: texts.misread_rate || "", type: "line", yAxisIndex: 1,
      data: rows.map(function (r) { return Math.round((r.misread_rate || 0) * 1000) / 10; })
    }])
  }, rows.length === 0);

  var ack = (figures.acknowledge_seconds || {}).histogram || {};
  var ackKeys = Object.keys(ack);
  var ackTotal = ackKeys.reduce(function (s, k) { return s + ack[k]; }, 0);
  chart("chart-ack", {
    tooltip: { trigger: "axis" },
    grid: { left: 40, right: 16, bottom: 30, top: 20 },
    xAxis: { type: "category", data: ackKeys },
    yAxis: { type: "value", minInterval: 1 },
    series: [{ type: "bar", name: texts.alerts || "", data: ackKeys.map(function (k) { return ack[k]; }) }]
  }, ackTotal === 0);

  window.addEventListener("resize", function () {
    charts.forEach(function (c) { c.resize(); });
  });
})();
