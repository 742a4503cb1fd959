/* Shared by the dispatch console (dispatch.js) and the coverage page (coverage.js):
 * a Leaflet map with the configured basemap, the road lines and the district borders
 * (the same sources as the dashboard's map.js), plus small helpers: translated texts
 * from the "dispatch-i18n" block, JSON fetches that send the CSRF token, durations.
 */
(function () {
  "use strict";

  function readJson(id) {
    var node = document.getElementById(id);
    if (!node) return {};
    try { return JSON.parse(node.textContent || "{}"); } catch (e) { return {}; }
  }

  var i18n = readJson("dispatch-i18n");

  function t(key, vars) {
    var s = (i18n.texts && i18n.texts[key]) || key;
    if (vars) Object.keys(vars).forEach(function (k) { s = s.replace("%(" + k + ")s", vars[k]); });
    return s;
  }

  function label(table, key) {
    return (i18n[table] && i18n[table][key]) || key;
  }

  /* The session's CSRF token, from the hx-headers attribute base.html puts on <body>. */
  function csrf() {
    try {
      return JSON.parse(document.body.getAttribute("hx-headers") || "{}")["X-CSRF-Token"] || "";
    } catch (e) { return ""; }
  }

  function api(method, url, body) {
    var opts = { method: method, credentials: "same-origin",
                 headers: { Accept: "application/json" } };
    if (method !== "GET") opts.headers["X-CSRF-Token"] = csrf();
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    return fetch(url, opts).then(function (r) {
      return r.text().then(function (text) {
        var data = null;
        try { data = text ? JSON.parse(text) : null; } catch (e) { data = null; }
        if (!r.ok) {
          var err = new Error((data && data.detail) || ("HTTP " + r.status));
          err.status = r.status;
          err.problem = data;
          throw err;
        }
        return data;
      });
    });
  }

  function duration(s) {
    if (s === null || s === undefined || !isFinite(s)) return "—";
    s = Math.round(s);
    return Math.floor(s / 60) + ":" + ("0" + (s % 60)).slice(-2);
  }

  function percent(x, digits) {
    if (x === null || x === undefined || !isFinite(x)) return "—";
    return (100 * x).toFixed(digits === undefined ? 1 : digits) + "%";
  }

  function create(el) {
    var map = L.map(el, { preferCanvas: true, minZoom: 3, maxZoom: 19 });
    map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
    map.setView([31.78, 119.95], 11);
    var roads = L.featureGroup().addTo(map);
    var districts = L.featureGroup().addTo(map);
    var ready = api("GET", "/api/v1/map/config").then(function (cfg) {
      if (cfg && cfg.center) map.setView(cfg.center, cfg.zoom || 12);
      if (cfg && cfg.tile_url) {
        L.tileLayer(cfg.tile_url, { attribution: cfg.tile_attribution || "", maxZoom: 19 })
          .addTo(map);
      }
      return Promise.all([
        api("GET", "/api/v1/map/roads").then(function (fc) {
          roads.addLayer(L.geoJSON(fc, { interactive: false, style: function () {
            return { color: "#b9c0c9", weight: 1, opacity: 0.8 };
          } }));
        }).catch(function () {}),
        api("GET", "/api/v1/jurisdictions?level=district").then(function (fc) {
          var layer = L.geoJSON(fc, { interactive: false, style: function () {
            return { color: "#1d4ed8", weight: 2, opacity: 0.6, fill: false };
          } });
          districts.addLayer(layer);
          var b = layer.getBounds();
          if (b.isValid()) map.fitBounds(b, { padding: [10, 10], maxZoom: 14, animate: false });
        }).catch(function () {})
      ]);
    }).catch(function () {}).then(function () { return map; });
    window.addEventListener("resize", function () { map.invalidateSize(); });
    return { map: map, ready: ready };
  }

  window.AnwangDispatch = {
    readJson: readJson, t: t, label: label, api: api, csrf: csrf, duration: duration,
    percent: percent, create: create, i18n: i18n
  };
})();
