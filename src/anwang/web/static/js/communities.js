/* Maps and charts of the smart-community pages (anwang/communities/pages.py, templates
 * communities/*.html). Data comes from <script type="application/json"> blocks:
 *   #cm-data       {communities: [{code, name, lat, lon, devices, open_alarms}]} (list),
 *                  or {outline: GeoJSON, devices: [{id, kind, lat, lon, state, alarm}]}
 *                  (a community, an alarm) — devices are circles coloured by state,
 *                  ringed red while an alarm is open (colours as in css/communities.css);
 *   #cm-telemetry  {samples: [[ISO time, {metric: value}], ...]} — one line per metric;
 *   #cm-per-day    {days: [ISO date], series: {severity: {day: n}}, labels: {...}};
 *   #cm-i18n       translated labels.
 * What was drawn is published in window.anwangCommunities for tests.
 */
(function () {
  "use strict";

  var STATE_COLOURS = { online: "#1e9e4a", offline: "#d92d20", never: "#98a2b3", inactive: "#30363d" };
  var SEVERITY_COLOURS = { critical: "#b42318", high: "#e8590c", medium: "#f2b705", low: "#5b6673" };
  var drawn = (window.anwangCommunities = { markers: 0, outline: false, charts: 0, ready: false });

  function readJson(id, fallback) {
    var node = document.getElementById(id);
    if (!node) return fallback;
    try { return JSON.parse(node.textContent); } catch (e) { return fallback; }
  }

  function text(s) {
    var span = document.createElement("span");
    span.textContent = s == null ? "" : String(s);
    return span.innerHTML;
  }

  var i18n = readJson("cm-i18n", {});

  function drawMap() {
    var el = document.getElementById("cm-map");
    var data = readJson("cm-data", null);
    if (!el || !window.L || !data) return;
    var map = L.map(el, { preferCanvas: true, minZoom: 3, maxZoom: 20 });
    map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
    var layer = L.featureGroup().addTo(map);
    fetch("/api/v1/map/config", { credentials: "same-origin" }).then(function (r) {
      return r.ok ? r.json() : {};
    }).then(function (cfg) {
      if (cfg && cfg.tile_url) {
        L.tileLayer(cfg.tile_url, { attribution: cfg.tile_attribution || "", maxZoom: 19 }).addTo(map);
      }
    }, function () {});

    if (data.outline) {
      L.geoJSON(data.outline, { style: { color: "#1d4ed8", weight: 2, fillOpacity: 0.04 } }).addTo(layer);
      drawn.outline = true;
    }
    (data.communities || []).forEach(function (c) {
      var alarmed = c.open_alarms > 0;
      L.circleMarker([c.lat, c.lon], {
        radius: alarmed ? 9 : 6, color: "#fff", weight: 1.5,
        fillColor: alarmed ? "#d92d20" : "#1d4ed8", fillOpacity: 0.9
      }).bindPopup(
        '<div class="map-popup-name"><a href="/communities/' + encodeURIComponent(c.code) + '">' +
        text(c.name) + "</a></div>" + '<div class="map-popup-meta">' + text(c.code) + " · " +
        text(c.devices) + (alarmed ? " · " + text(i18n.alarms) + ": " + text(c.open_alarms) : "") +
        "</div>"
      ).addTo(layer);
      drawn.markers += 1;
    });
    (data.devices || []).forEach(function (d) {
      var kind = (i18n.kind || {})[d.kind] || d.kind;
      var state = (i18n.state || {})[d.state] || d.state;
      L.circleMarker([d.lat, d.lon], {
        radius: d.alarm ? 9 : 6, color: d.alarm ? "#b42318" : "#fff", weight: d.alarm ? 3 : 1.5,
        fillColor: STATE_COLOURS[d.state] || "#98a2b3", fillOpacity: 0.95
      }).bindPopup(
        '<div class="map-popup-name"><a href="/devices/' + encodeURIComponent(d.id) + '">' +
        text(d.id) + "</a></div>" + '<div class="map-popup-meta">' + text(kind) + " · " +
        text(state) + (d.floor != null ? " · F" + text(d.floor) : "") + "</div>"
      ).addTo(layer);
      drawn.markers += 1;
    });
    var bounds = layer.getBounds();
    if (bounds.isValid()) {
      map.fitBounds(bounds.pad(0.2), { maxZoom: 18 });
    } else {
      map.setView([31.78, 119.95], 12);
    }
  }

  function chart(id, option) {
    var el = document.getElementById(id);
    if (!el || !window.echarts) return;
    var c = window.echarts.init(el, null, { renderer: "canvas" });
    option.animation = false;
    c.setOption(option);
    window.addEventListener("resize", function () { c.resize(); });
    drawn.charts += 1;
  }

  function empty(id) {
    var el = document.getElementById(id);
    if (el) { el.classList.add("cm-chart-empty"); el.textContent = i18n.no_data || ""; }
  }

  function drawTelemetry() {
    var data = readJson("cm-telemetry", null);
    if (!data || !document.getElementById("telemetry-chart")) return;
    var samples = data.samples || [];
    if (!samples.length) { empty("telemetry-chart"); return; }
    var metrics = {};
    samples.forEach(function (s) { Object.keys(s[1] || {}).forEach(function (k) { metrics[k] = 1; }); });
    var names = Object.keys(metrics).sort();
    chart("telemetry-chart", {
      tooltip: { trigger: "axis" },
      legend: { bottom: 0, type: "scroll" },
      grid: { left: 50, right: 20, top: 20, bottom: 60 },
      xAxis: { type: "time" },
      yAxis: { type: "value", scale: true },
      dataZoom: [{ type: "inside" }],
      series: names.map(function (m) {
        return {
          name: m, type: "line", showSymbol: false, connectNulls: false,
          data: samples.filter(function (s) { return s[1] && s[1][m] != null; })
                       .map(function (s) { return [s[0], s[1][m]]; })
        };
      })
    });
  }

  function drawPerDay() {
    var data = readJson("cm-per-day", null);
    if (!data || !document.getElementById("per-day-chart")) return;
    var days = data.days || [];
    if (!days.length) { empty("per-day-chart"); return; }
    var severities = ["critical", "high", "medium", "low"];
    chart("per-day-chart", {
      tooltip: { trigger: "axis" },
      legend: { bottom: 0 },
      grid: { left: 40, right: 16, top: 16, bottom: 50 },
      xAxis: { type: "category", data: days },
      yAxis: { type: "value", minInterval: 1 },
      series: severities.map(function (s) {
        return {
          name: (data.labels || {})[s] || s, type: "bar", stack: "alarms",
          itemStyle: { color: SEVERITY_COLOURS[s] },
          data: days.map(function (d) { return ((data.series || {})[s] || {})[d] || 0; })
        };
      })
    });
  }

  drawMap();
  drawTelemetry();
  drawPerDay();
  drawn.ready = true;
})();
