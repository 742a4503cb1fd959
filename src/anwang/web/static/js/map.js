/* The dashboard map: jurisdictions, roads and live events on Leaflet.
 *
 * Data comes from the JSON API: /api/v1/map/config (view and basemap),
 * /api/v1/jurisdictions?level=... (GeoJSON of the user's scope) and /api/v1/map/roads.
 * Everything is drawn on one canvas (preferCanvas), which keeps thousands of grid cells
 * and road lines fast; because canvas features are not DOM nodes, the map publishes
 * what it drew in window.anwangMapStats (the browser test reads it) and itself as
 * window.anwangMap.
 *
 * Live events reach the map as "anwang:event" DOM events dispatched by feed.js; an event
 * whose payload has lat/lon gets a briefly pulsing marker. "anwang:focus" pans to a place.
 */
(function () {
  "use strict";

  var el = document.getElementById("map");
  if (!el || !window.L) return;

  var i18n = readJson("anwang-i18n");
  var msg = i18n.messages || {};
  var locale = i18n.locale || document.documentElement.getAttribute("data-locale") || "zh_CN";
  var GRID_MIN_ZOOM = parseInt(el.getAttribute("data-grid-min-zoom"), 10) || 13;
  var MAX_EVENT_MARKERS = 200;

  var stats = (window.anwangMapStats = {
    districts: 0, stations: 0, grids: 0, roads: 0, events: 0, ready: false, errors: 0
  });

  // Polygons keep a (nearly) transparent fill so that a click inside one finds it.
  var STYLE = {
    district: { stroke: false, fillColor: "#1d4ed8", fillOpacity: 0.05 },
    districtOutline: { color: "#1d4ed8", weight: 3, opacity: 0.95, fill: false, interactive: false },
    station: { color: "#c2410c", weight: 1.6, opacity: 0.9, dashArray: "6 4", fillColor: "#c2410c", fillOpacity: 0.001 },
    grid: { color: "#0f766e", weight: 0.8, opacity: 0.6, fillColor: "#0f766e", fillOpacity: 0.001 }
  };
  // Road classes and their line widths in pixels: "road_class" as anwang.demo and
  // anwang.roads write it, else OpenStreetMap's "highway" tag.
  var ROAD_WEIGHT = {
    motorway: 3.2, trunk: 3, primary: 2.6, secondary: 2.1, tertiary: 1.7,
    unclassified: 1.2, residential: 1.1, service: 0.8, living_street: 0.9
  };

  var map = L.map(el, { preferCanvas: true, zoomControl: true, minZoom: 3, maxZoom: 19 });
  // Credit Leaflet in plain text (its default prefix also carries a flag).
  map.attributionControl.setPrefix('<a href="https://leafletjs.com">Leaflet</a>');
  window.anwangMap = map;

  var districtLayer = L.featureGroup();
  var stationLayer = L.featureGroup();
  var gridGroup = L.layerGroup();      // what the layer control toggles
  var gridLayer = null;                // filled once, shown only when zoomed in
  var roadLayer = L.featureGroup();
  var districtOutline = null;
  var eventLayer = L.featureGroup();
  var eventMarkers = [];
  var pending = [];                    // live events that arrived before the map was ready
  var ready = false;

  function readJson(id) {
    var node = document.getElementById(id);
    if (!node) return {};
    try { return JSON.parse(node.textContent || "{}"); } catch (e) { return {}; }
  }

  function t(key, fallback) { return msg[key] || fallback || key; }

  function getJson(url) {
    return fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error(url + ": HTTP " + r.status);
        return r.json();
      });
  }

  var statusEl = document.getElementById("map-status");
  function showStatus(text) {
    if (!statusEl) return;
    statusEl.textContent = text;
    statusEl.hidden = !text;
  }
  function failed(err) {
    stats.errors += 1;
    showStatus(t("map_error"));
    if (window.console) console.warn("anwang map:", err);
  }

  function localName(p) {
    if (locale === "en" && p.name_en) return p.name_en;
    return p.name || p.name_en || p.code || "";
  }

  function popupFor(p) {
    var box = document.createElement("div");
    var name = document.createElement("div");
    name.className = "map-popup-name";
    name.textContent = localName(p);
    var meta = document.createElement("div");
    meta.className = "map-popup-meta";
    var level = p.level ? t("level_" + p.level, p.level) + " · " : "";
    meta.textContent = level + t("code", "Code") + " " + (p.code || "");
    box.appendChild(name);
    box.appendChild(meta);
    return box;
  }

  function jurisdictionLayer(fc, style) {
    return L.geoJSON(fc, {
      style: function () { return style; },
      onEachFeature: function (feature, layer) {
        var p = feature.properties || {};
        layer.bindPopup(function () { return popupFor(p); });
      }
    });
  }

  function countFeatures(fc) {
    return fc && fc.features ? fc.features.length : 0;
  }

  /* One canvas draws every layer in the order its shapes were added, and the layers
     arrive in any order: put them back from the bottom up (roads, districts, stations,
     grids, district borders). The topmost shape under the pointer gets the click. */
  function restack() {
    [roadLayer, districtLayer, stationLayer, gridLayer, districtOutline].forEach(function (l) {
      if (l && map.hasLayer(l)) l.bringToFront();
    });
  }

  function loadLevel(level, target, style, key) {
    return getJson("/api/v1/jurisdictions?level=" + level).then(function (fc) {
      target.clearLayers();
      target.addLayer(jurisdictionLayer(fc, style));
      stats[key] = countFeatures(fc);
      restack();
      return fc;
    });
  }

  function roadStyle(feature) {
    var p = feature.properties || {};
    var cls = String(p.road_class || p.highway || p["class"] || p.fclass || "").replace(/_link$/, "");
    var w = ROAD_WEIGHT[cls] || 1;
    var major = w >= 2.1;
    return { color: major ? "#939aa5" : "#bcc2ca", weight: w, opacity: major ? 0.9 : 0.75,
             interactive: false };
  }

  function loadRoads() {
    return getJson("/api/v1/map/roads").then(function (fc) {
      roadLayer.clearLayers();
      roadLayer.addLayer(L.geoJSON(fc, { style: roadStyle, interactive: false }));
      stats.roads = countFeatures(fc);
      restack();
    });
  }

  // Grids: fetched once the first time the map is zoomed in far enough, then shown or
  // hidden with the zoom so that a city of thousands of cells stays fast when zoomed out.
  var gridRequest = null;
  function syncGrids() {
    var wanted = map.getZoom() >= GRID_MIN_ZOOM;
    if (wanted && !gridLayer && !gridRequest) {
      gridRequest = getJson("/api/v1/jurisdictions?level=grid").then(function (fc) {
        gridLayer = jurisdictionLayer(fc, STYLE.grid);
        stats.grids = countFeatures(fc);
        syncGrids();
      }).catch(failed);
      return;
    }
    if (!gridLayer) return;
    if (wanted && !gridGroup.hasLayer(gridLayer)) {
      gridGroup.addLayer(gridLayer);
      restack();
    }
    if (!wanted && gridGroup.hasLayer(gridLayer)) gridGroup.removeLayer(gridLayer);
  }

  function legendControl() {
    var legend = L.control({ position: "bottomleft" });
    legend.onAdd = function () {
      // A <details>: open on a wide screen, folded on a phone where space is short.
      var div = L.DomUtil.create("details", "map-legend");
      div.open = !window.matchMedia("(max-width: 700px)").matches;
      var h = document.createElement("summary");
      h.textContent = t("legend", "Legend");
      div.appendChild(h);
      var ul = document.createElement("ul");
      [
        ["swatch", STYLE.districtOutline.color, t("districts")],
        ["swatch", STYLE.station.color, t("stations")],
        ["swatch", STYLE.grid.color, t("grids")],
        ["swatch swatch-line", "#939aa5", t("roads")],
        ["swatch swatch-dot", "#e5383b", t("events")]
      ].forEach(function (row) {
        var li = document.createElement("li");
        var sw = document.createElement("span");
        sw.className = row[0];
        sw.style.borderColor = row[1];
        if (row[0].indexOf("dot") >= 0) sw.style.background = row[1];
        var label = document.createElement("span");
        label.textContent = row[2];
        li.appendChild(sw);
        li.appendChild(label);
        ul.appendChild(li);
      });
      div.appendChild(ul);
      L.DomEvent.disableClickPropagation(div);
      return div;
    };
    return legend;
  }

  function pulseIcon() {
    return L.divIcon({
      className: "pulse-marker",
      html: '<span class="ring"></span><span class="dot"></span>',
      iconSize: [24, 24],
      iconAnchor: [12, 12]
    });
  }

  function validLatLon(lat, lon) {
    return typeof lat === "number" && typeof lon === "number" && isFinite(lat) && isFinite(lon) &&
      lat >= -90 && lat <= 90 && lon >= -180 && lon <= 180;
  }

  function dropMarker(detail) {
    var p = (detail && detail.payload) || {};
    var lat = Number(p.lat), lon = Number(p.lon);
    if (!validLatLon(lat, lon)) return;
    var marker = L.marker([lat, lon], { icon: pulseIcon(), keyboard: false });
    if (detail.label) marker.bindTooltip(detail.label, { direction: "top", offset: [0, -10] });
    eventLayer.addLayer(marker);
    eventMarkers.push(marker);
    while (eventMarkers.length > MAX_EVENT_MARKERS) eventLayer.removeLayer(eventMarkers.shift());
    stats.events += 1;
    // Lets other scripts dress the marker (alerts.js: colour, popup with a link).
    document.dispatchEvent(new CustomEvent("anwang:marker", { detail: { event: detail, marker: marker } }));
    // The ring pulses a few times (CSS); afterwards only the dot stays.
    window.setTimeout(function () {
      var node = marker.getElement && marker.getElement();
      if (node) node.classList.add("settled");
    }, 6000);
  }

  document.addEventListener("anwang:event", function (e) {
    if (ready) dropMarker(e.detail); else pending.push(e.detail);
  });
  document.addEventListener("anwang:focus", function (e) {
    var d = e.detail || {};
    if (validLatLon(d.lat, d.lon)) map.flyTo([d.lat, d.lon], Math.max(map.getZoom(), 15));
  });

  function start(cfg) {
    var center = cfg && cfg.center && cfg.center.length === 2 ? cfg.center : [31.78, 119.95];
    map.setView(center, (cfg && cfg.zoom) || 12);
    if (cfg && cfg.grid_min_zoom) GRID_MIN_ZOOM = cfg.grid_min_zoom;

    var overlays = {};
    if (cfg && cfg.tile_url) {
      var tiles = L.tileLayer(cfg.tile_url, {
        attribution: cfg.tile_attribution || "", maxZoom: 19
      }).addTo(map);
      overlays[t("basemap")] = tiles;
    }
    roadLayer.addTo(map);
    districtLayer.addTo(map);
    stationLayer.addTo(map);
    gridGroup.addTo(map);
    eventLayer.addTo(map);
    overlays[t("districts")] = districtLayer;
    overlays[t("stations")] = stationLayer;
    overlays[t("grids_hint")] = gridGroup;
    overlays[t("roads")] = roadLayer;
    overlays[t("events")] = eventLayer;
    L.control.layers(null, overlays, { collapsed: window.matchMedia("(max-width: 700px)").matches })
      .addTo(map);
    legendControl().addTo(map);
    L.control.scale({ imperial: false, position: "bottomright" }).addTo(map);

    ready = true;
    pending.splice(0).forEach(dropMarker);

    var jobs = [
      loadLevel("district", districtLayer, STYLE.district, "districts").then(function (fc) {
        // The districts' borders are drawn once more, above everything and not
        // clickable, so that they stay visible over stations and grids while a click
        // inside still finds the finest jurisdiction under it.
        districtOutline = L.geoJSON(fc, { style: function () { return STYLE.districtOutline; },
                                          interactive: false });
        districtLayer.addLayer(districtOutline);
        restack();
      }),
      loadLevel("station", stationLayer, STYLE.station, "stations"),
      loadRoads()
    ].map(function (p) { return p.catch(failed); });
    Promise.all(jobs).then(function () {
      var bounds = districtLayer.getBounds();
      if (!bounds.isValid()) bounds = stationLayer.getBounds();
      if (bounds.isValid()) {
        map.fitBounds(bounds, { padding: [16, 16], maxZoom: 15, animate: false });
      } else if (!stats.errors) {
        showStatus(t("no_jurisdictions"));
      }
      stats.ready = true;
      syncGrids();
    });
    map.on("zoomend", syncGrids);
  }

  // Resize with the page (the feed can move below the map on narrow screens).
  window.addEventListener("resize", function () { map.invalidateSize(); });

  getJson("/api/v1/map/config").then(start, function (err) {
    failed(err);
    start(null);
  });
})();
