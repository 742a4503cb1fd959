/* Response-time charts (templates/dispatch/response_times.html) with the vendored
 * Apache ECharts, from GET /api/v1/dispatch/response-times: per district the median and
 * the share within 1, 3 and 5 minutes; per hour of the call the same. */
(function () {
  "use strict";
  var node = document.getElementById("dispatch-i18n");
  var i18n = {};
  try { i18n = JSON.parse(node ? node.textContent : "{}"); } catch (e) { i18n = {}; }
  function t(key, vars) {
    var s = (i18n.texts && i18n.texts[key]) || key;
    if (vars) Object.keys(vars).forEach(function (k) { s = s.replace("%(" + k + ")s", vars[k]); });
    return s;
  }
  if (!window.echarts) return;
  var stats = (window.anwangResponseTimes = { ready: false, districts: 0 });

  function pct(x) { return x === null ? null : Math.round(1000 * x) / 10; }

  function chart(el, categories, rows) {
    var c = window.echarts.init(el);
    var targets = ["1", "3", "5"];
    var series = targets.map(function (m) {
      return { name: t("within", { m: m }), type: "bar", yAxisIndex: 0,
               data: rows.map(function (r) { return pct(r.within[m]); }) };
    });
    series.push({ name: t("median"), type: "line", yAxisIndex: 1, smooth: true,
                  data: rows.map(function (r) { return r.median_s; }) });
    c.setOption({
      tooltip: { trigger: "axis" },
      legend: { top: 0 },
      grid: { left: 48, right: 56, top: 36, bottom: 48 },
      xAxis: { type: "category", data: categories, axisLabel: { interval: 0, rotate: categories.length > 8 ? 40 : 0 } },
      yAxis: [{ type: "value", name: "%", max: 100 }, { type: "value", name: "s" }],
      series: series
    });
    window.addEventListener("resize", function () { c.resize(); });
    return c;
  }

  fetch("/api/v1/dispatch/response-times?days=30", { credentials: "same-origin" })
    .then(function (r) { if (!r.ok) throw new Error("HTTP " + r.status); return r.json(); })
    .then(function (data) {
      var o = data.overall;
      var dl = document.getElementById("rt-overall");
      [[t("count"), String(o.count)], [t("median"), o.median_s === null ? "—" : String(o.median_s)]]
        .concat(["1", "3", "5"].map(function (m) {
          return [t("within", { m: m }), o.within[m] === null ? "—" : pct(o.within[m]) + "%"];
        })).forEach(function (kv) {
          var dt = document.createElement("dt"); dt.textContent = kv[0];
          var dd = document.createElement("dd"); dd.textContent = kv[1];
          dl.appendChild(dt); dl.appendChild(dd);
        });
      chart(document.getElementById("chart-districts"),
            data.districts.map(function (d) { return d.name; }), data.districts);
      chart(document.getElementById("chart-hours"),
            data.hours.map(function (h) { return h.hour + ":00"; }), data.hours);
      stats.districts = data.districts.length;
      stats.ready = true;
    })
    .catch(function (err) { if (window.console) console.warn("anwang charts:", err); });
})();
