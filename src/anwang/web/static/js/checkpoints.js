/* Maps of the checkpoint pages (templates/checkpoints/*.html).
 *
 * The page hands over its data in <script type="application/json"> blocks:
 *   #cp-markers  checkpoints [{code, name, kind, lat, lon, status, reads_24h}] — drawn
 *                as circles coloured by health (the colours match css/checkpoints.css);
 *   #cp-route    reads of a search [{lat, lon, checkpoint, plate, at}] in time order —
 *                drawn as one numbered line per plate, the vehicle's route;
 *   #cp-i18n     translated labels.
 * The basemap comes from /api/v1/map/config (none configured: markers on a plain map).
 * What was drawn is published in window.anwangCheckpointMap for tests.
 */
(function () {
  "use strict";

  var el = document.getElementById("cp-map");

  // The search form sends the browser's UTC offset with times typed without one.
  var tz = document.querySelector("input[data-tz-offset]");
  if (tz && !tz.value) tz.value = String(-new Date().getTimezoneOffset());

  if (!el || !window.L) return;

  var STATUS_COLOURS = { online: "#1e9e4a", offline: "#d92d20", never: "#98a2b3", inactive: "#30363d" };
  var ROUTE_COLOURS = ["#1d4ed8", "#c2410c", "#7c3aed", "#0f766e", "#be185d"];

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

  var i18n = readJson("cp-i18n", {});
  var markers = readJson("cp-markers", []);
  var route = readJson("cp-route", []);
  var stats = (window.anwangCheckpointMap = { markers: 0, routes: 0, ready: false });

  var map = L.map(el, { preferCanvas: true, minZoom: 3, maxZoom: 19, zoomSnap: 0.25 });
  map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
  var layer = L.featureGroup().addTo(map);

  markers.forEach(function (m) {
    var colour = STATUS_COLOURS[m.status] || "#98a2b3";
    var status = (i18n.status || {})[m.status] || m.status;
    var kind = (i18n.kind || {})[m.kind] || m.kind;
    L.circleMarker([m.lat, m.lon], {
      radius: markers.length > 50 ? 5 : 8, color: "#fff", weight: 1.5,
      fillColor: colour, fillOpacity: 0.95
    }).bindPopup(
      '<div class="map-popup-name"><a href="/checkpoints/' + encodeURIComponent(m.code) + '">' +
      text(m.name) + "</a></div>" +
      '<div class="map-popup-meta">' + text(m.code) + " · " + text(kind) + "</div>" +
      '<div class="map-popup-meta">' + text(status) + " · " + text(i18n.reads_24h) + ": " +
      text(m.reads_24h) + "</div>"
    ).addTo(layer);
    stats.markers += 1;
  });

  var byPlate = {};
  route.forEach(function (r) { (byPlate[r.plate] = byPlate[r.plate] || []).push(r); });
  Object.keys(byPlate).forEach(function (plate, n) {
    var reads = byPlate[plate];
    var colour = ROUTE_COLOURS[n % ROUTE_COLOURS.length];
    if (reads.length > 1) {
      L.polyline(reads.map(function (r) { return [r.lat, r.lon]; }), {
        color: colour, weight: 3, opacity: 0.8
      }).addTo(layer);
      stats.routes += 1;
    }
    reads.forEach(function (r, i) {
      L.marker([r.lat, r.lon], {
        icon: L.divIcon({
          className: "cp-step",
          html: '<span style="background:' + colour + '">' + (i + 1) + "</span>",
          iconSize: [22, 22]
        })
      }).bindPopup(
        '<div class="map-popup-name">' + text(plate) + " · " + (i + 1) + "</div>" +
        '<div class="map-popup-meta">' + text(r.checkpoint) + "</div>" +
        '<div class="map-popup-meta">' + text(new Date(r.at).toLocaleString()) + "</div>"
      ).addTo(layer);
      stats.markers += 1;
    });
  });

  function fit() {
    if (layer.getLayers().length) {
      map.fitBounds(layer.getBounds().pad(0.15), { maxZoom: 14 });
    } else {
      map.setView([31.78, 119.95], 10);
    }
    stats.ready = true;
  }

  // Major roads as a backdrop (the same lines the dashboard draws), under the markers.
  var MAJOR = { motorway: 2.4, trunk: 2, primary: 1.6, secondary: 1.1 };
  fetch("/api/v1/map/roads", { credentials: "same-origin" })
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (doc) {
      if (!doc || !doc.features) return;
      L.geoJSON(doc, {
        interactive: false,
        filter: function (f) { return !!MAJOR[(f.properties || {}).road_class]; },
        style: function (f) {
          return { color: "#8a94a3", weight: MAJOR[f.properties.road_class], opacity: 0.7 };
        }
      }).addTo(map).bringToBack();
    })
    .catch(function () { /* the roads are decoration */ });

  fetch("/api/v1/map/config", { credentials: "same-origin" })
    .then(function (r) { return r.ok ? r.json() : null; })
    .then(function (cfg) {
      if (cfg && cfg.tile_url) {
        L.tileLayer(cfg.tile_url, { attribution: cfg.tile_attribution || "", maxZoom: 19 }).addTo(map);
      }
      if (!layer.getLayers().length && cfg && cfg.center) {
        map.setView(cfg.center, cfg.zoom || 11);
        stats.ready = true;
        return;
      }
      fit();
    })
    .catch(fit);
})();
