/* The dispatcher's console (templates/dispatch/console.html).
 *
 * Left: the new-incident form (a click on the map sets its location) and the open
 * incidents. Middle: the map — posts, units coloured by status, incidents, and the
 * routes of the recommended units. Right: the selected incident's nearest units from
 * GET /api/v1/incidents/{id}/recommendations (ETA, distance, where they start, the
 * 3-minute coverage each would take away), each with an Assign button, an instruction
 * form and clear/cancel. Live changes arrive over the SSE stream
 * (/api/v1/stream?names=anwang.dispatch.>) and update markers and lists.
 * What is drawn is published in window.anwangDispatch (the browser test reads it).
 */
(function () {
  "use strict";

  var D = window.AnwangDispatch;
  var el = document.getElementById("dispatch-map");
  if (!D || !el || !window.L) return;
  var t = D.t, api = D.api;

  var STATUS_COLOURS = {
    available: "#1e9e4a", dispatched: "#e07b00", en_route: "#1d5fd1",
    on_scene: "#7b2cbf", out_of_service: "#8a94a3"
  };
  var stats = (window.anwangDispatch = {
    ready: false, incidents: 0, units: 0, posts: 0, routes: 0, recommended: 0,
    assigned: 0, instructions: 0, selected: null, live: false, errors: 0
  });

  var built = D.create(el);
  var map = built.map;
  var postLayer = L.featureGroup().addTo(map);
  var unitLayer = L.featureGroup().addTo(map);
  var incidentLayer = L.featureGroup().addTo(map);
  var routeLayer = L.featureGroup().addTo(map);
  var pickMarker = null;
  var unitMarkers = {};
  var incidents = {};
  var selected = null;
  var lastRecs = null;

  var form = document.getElementById("incident-form");
  var formStatus = document.getElementById("form-status");
  var list = document.getElementById("incident-list");
  var detail = document.getElementById("incident-detail");
  var recRows = document.getElementById("rec-rows");
  var coverageNow = document.getElementById("coverage-now");
  var instrForm = document.getElementById("instruction-form");
  var actions = document.getElementById("incident-actions");

  function fail(where, err) {
    stats.errors += 1;
    if (where) where.textContent = t("failed", { detail: err.message || String(err) });
    if (window.console) console.warn("anwang dispatch:", err);
  }

  function node(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = text;
    return n;
  }

  /* --- units and posts on the map ------------------------------------------------ */

  function unitStyle(status) {
    var c = STATUS_COLOURS[status] || "#444";
    return { radius: 6, color: "#fff", weight: 1.5, fillColor: c, fillOpacity: 0.95 };
  }

  function placeUnit(u) {
    var pos = u.position || (u.lat !== null && u.lat !== undefined ? [u.lat, u.lon]
                                                                   : [u.home_lat, u.home_lon]);
    if (!pos || pos[0] === null) return;
    var id = u.unit_id || u.id;
    var m = unitMarkers[id];
    if (!m) {
      m = L.circleMarker(pos, unitStyle(u.status));
      m.bindTooltip("", { direction: "top" });
      unitLayer.addLayer(m);
      unitMarkers[id] = m;
    } else {
      m.setLatLng(pos);
      m.setStyle(unitStyle(u.status));
    }
    m.unitStatus = u.status;
    m.setTooltipContent(u.call_sign + " · " + D.label("unit_status", u.status));
    stats.units = Object.keys(unitMarkers).length;
  }

  function loadUnits() {
    return api("GET", "/api/v1/units").then(function (units) {
      units.forEach(placeUnit);
    });
  }

  function loadPosts() {
    return api("GET", "/api/v1/posts").then(function (posts) {
      postLayer.clearLayers();
      posts.forEach(function (p) {
        var quick = p.kind === "quick_response";
        var m = L.circleMarker([p.lat, p.lon], {
          radius: quick ? 4 : 3, color: quick ? "#0f2747" : "#c2410c", weight: 2,
          fillColor: "#fff", fillOpacity: 1, interactive: true
        });
        m.bindTooltip(p.code + " · " + p.name + " · " + D.label("post_kinds", p.kind));
        postLayer.addLayer(m);
      });
      stats.posts = posts.length;
    });
  }

  /* --- incidents ------------------------------------------------------------------ */

  function incidentIcon(inc, isSelected) {
    return L.divIcon({
      className: "incident-marker prio-" + inc.priority + (isSelected ? " selected" : ""),
      html: "<span>" + inc.priority + "</span>", iconSize: [22, 22], iconAnchor: [11, 11]
    });
  }

  function renderIncidents() {
    incidentLayer.clearLayers();
    list.textContent = "";
    var rows = Object.keys(incidents).map(function (k) { return incidents[k]; });
    rows.sort(function (a, b) {
      return a.priority - b.priority || (a.received_at < b.received_at ? 1 : -1);
    });
    if (!rows.length) list.appendChild(node("li", "incident-empty muted", "—"));
    rows.forEach(function (inc) {
      var li = node("li", "incident-item" + (inc.id === selected ? " selected" : ""));
      li.setAttribute("data-incident-id", inc.id);
      li.setAttribute("data-status", inc.status);
      var b = node("button", "incident-pick");
      b.type = "button";
      b.setAttribute("data-incident-id", inc.id);
      b.appendChild(node("span", "prio prio-" + inc.priority, "P" + inc.priority));
      b.appendChild(node("span", "incident-type", D.label("types", inc.type)));
      b.appendChild(node("span", "chip chip-" + inc.status, D.label("incident_status", inc.status)));
      b.appendChild(node("span", "incident-address", inc.address || ""));
      li.appendChild(b);
      list.appendChild(li);
      var m = L.marker([inc.lat, inc.lon], { icon: incidentIcon(inc, inc.id === selected),
                                             zIndexOffset: inc.id === selected ? 1000 : 0 });
      m.on("click", function () { select(inc.id); });
      incidentLayer.addLayer(m);
    });
    stats.incidents = rows.length;
  }

  function loadIncidents() {
    return api("GET", "/api/v1/incidents?active=true&limit=200").then(function (rows) {
      incidents = {};
      rows.forEach(function (inc) { incidents[inc.id] = inc; });
      if (selected && !incidents[selected]) clearSelection();
      renderIncidents();
    });
  }

  list.addEventListener("click", function (e) {
    var b = e.target.closest ? e.target.closest(".incident-pick") : null;
    if (b) select(b.getAttribute("data-incident-id"));
  });

  /* --- the selected incident ------------------------------------------------------ */

  function clearSelection() {
    selected = null;
    stats.selected = null;
    routeLayer.clearLayers();
    recRows.textContent = "";
    stats.routes = stats.recommended = 0;
    detail.textContent = "";
    detail.appendChild(node("p", "muted", t("choose_incident")));
    instrForm.hidden = true;
    actions.hidden = true;
    coverageNow.textContent = "";
  }

  function showDetail(inc) {
    detail.textContent = "";
    var h = node("p", "incident-title");
    h.appendChild(node("span", "prio prio-" + inc.priority, "P" + inc.priority));
    h.appendChild(document.createTextNode(" " + D.label("types", inc.type) + " "));
    h.appendChild(node("span", "chip chip-" + inc.status, D.label("incident_status", inc.status)));
    detail.appendChild(h);
    if (inc.address) detail.appendChild(node("p", "", inc.address));
    if (inc.description) detail.appendChild(node("p", "muted", inc.description));
    var assigned = (inc.units || []).filter(function (a) { return !a.released_at; });
    if (assigned.length) {
      var p = node("p", "assigned-units");
      p.appendChild(node("strong", "", t("assigned") + ": "));
      p.appendChild(document.createTextNode(assigned.map(function (a) {
        return a.call_sign + " (" + t("eta") + " " + D.duration(a.eta_s) + ")";
      }).join(", ")));
      detail.appendChild(p);
    }
    stats.assigned = assigned.length;
    var sel = instrForm.querySelector("select[name=unit_id]");
    sel.textContent = "";
    assigned.forEach(function (a) {
      var o = node("option", "", a.call_sign);
      o.value = a.unit_id;
      sel.appendChild(o);
    });
    instrForm.hidden = assigned.length === 0;
    actions.hidden = false;
    document.getElementById("timeline-link").href = "/dispatch/incidents/" + inc.id;
  }

  function drawRecommendations(recs) {
    lastRecs = recs;
    routeLayer.clearLayers();
    recRows.textContent = "";
    coverageNow.textContent = t("coverage_now", { share: D.percent(recs.coverage.share_now) });
    var drawn = 0;
    recs.units.forEach(function (u, i) {
      if (u.route) {
        var line = L.geoJSON(u.route, { interactive: false, style: function () {
          return { color: i === 0 ? "#e5383b" : "#1d5fd1", weight: i === 0 ? 5 : 3,
                   opacity: i === 0 ? 0.9 : 0.45, dashArray: i === 0 ? null : "6 6" };
        } });
        routeLayer.addLayer(line);
        drawn += 1;
      }
      var tr = node("tr", "rec-row");
      tr.setAttribute("data-unit-id", u.unit_id);
      var who = node("td", "");
      who.setAttribute("data-label", t("units"));
      var name = node("div", "rec-name");
      name.appendChild(node("strong", "", u.call_sign));
      name.appendChild(node("span", "muted", " " + D.label("kinds", u.kind)));
      who.appendChild(name);
      var from = node("div", "rec-origin muted",
                      u.origin === "home" ? t("from_home") : t("from_position"));
      if (u.stale) from.appendChild(node("span", "tag tag-warn",
                                         " " + t(u.position === "missing" ? "missing" : "stale")));
      who.appendChild(from);
      tr.appendChild(who);
      var eta = node("td", "num rec-eta", D.duration(u.eta_s));
      eta.setAttribute("data-label", t("eta"));
      tr.appendChild(eta);
      var dist = node("td", "num", u.distance_m === null ? "—" : (u.distance_m / 1000).toFixed(1) + " km");
      dist.setAttribute("data-label", t("distance"));
      tr.appendChild(dist);
      var loss = node("td", "num", D.percent(u.coverage_loss.share, 2));
      loss.setAttribute("data-label", t("coverage_loss"));
      tr.appendChild(loss);
      var act = node("td", "");
      var b = node("button", "button button-primary assign", t("assign"));
      b.type = "button";
      b.setAttribute("data-unit-id", u.unit_id);
      act.appendChild(b);
      tr.appendChild(act);
      recRows.appendChild(tr);
    });
    if (!recs.units.length) {
      var empty = node("tr", "empty-row");
      var td = node("td", "", t("no_units"));
      td.colSpan = 5;
      empty.appendChild(td);
      recRows.appendChild(empty);
    }
    stats.routes = drawn;
    stats.recommended = recs.units.length;
    var b = routeLayer.getBounds();
    if (b.isValid()) map.fitBounds(b.pad(0.2), { maxZoom: 15, animate: false });
  }

  function refreshSelected() {
    if (!selected) return Promise.resolve();
    var id = selected;
    return api("GET", "/api/v1/incidents/" + id).then(function (inc) {
      incidents[id] = inc;
      showDetail(inc);
      renderIncidents();
      return api("GET", "/api/v1/incidents/" + id + "/recommendations?limit=8");
    }).then(function (recs) {
      if (selected === id) drawRecommendations(recs);
    }).catch(function (err) { fail(detail, err); });
  }

  function select(id) {
    selected = id;
    stats.selected = id;
    stats.routes = stats.recommended = 0;
    renderIncidents();
    return refreshSelected();
  }

  recRows.addEventListener("click", function (e) {
    var b = e.target.closest ? e.target.closest("button.assign") : null;
    if (!b || !selected) return;
    b.disabled = true;
    api("POST", "/api/v1/incidents/" + selected + "/assign",
        { unit_id: b.getAttribute("data-unit-id") })
      .then(function (inc) {
        incidents[inc.id] = inc;
        return Promise.all([loadUnits(), refreshSelected()]);
      })
      .catch(function (err) { b.disabled = false; fail(detail, err); });
  });

  actions.addEventListener("click", function (e) {
    var b = e.target.closest ? e.target.closest("button[data-status]") : null;
    if (!b || !selected) return;
    api("POST", "/api/v1/incidents/" + selected + "/status", { status: b.getAttribute("data-status") })
      .then(function () { clearSelection(); return Promise.all([loadIncidents(), loadUnits()]); })
      .catch(function (err) { fail(detail, err); });
  });

  instrForm.addEventListener("submit", function (e) {
    e.preventDefault();
    var data = new FormData(instrForm);
    api("POST", "/api/v1/instructions", {
      text: String(data.get("text") || ""), unit_id: String(data.get("unit_id") || ""),
      incident_id: selected
    }).then(function () {
      instrForm.reset();
      stats.instructions += 1;
      formStatus.textContent = t("instruction_sent");
    }).catch(function (err) { fail(detail, err); });
  });

  /* --- the new-incident form ------------------------------------------------------ */

  map.on("click", function (e) {
    form.elements.lat.value = e.latlng.lat.toFixed(6);
    form.elements.lon.value = e.latlng.lng.toFixed(6);
    if (pickMarker) pickMarker.setLatLng(e.latlng);
    else pickMarker = L.circleMarker(e.latlng, { radius: 8, color: "#e5383b", weight: 3,
                                                 fill: false }).addTo(map);
  });

  form.addEventListener("submit", function (e) {
    e.preventDefault();
    var data = new FormData(form);
    var body = { type: String(data.get("type")), lat: Number(data.get("lat")),
                 lon: Number(data.get("lon")) };
    ["address", "caller", "description"].forEach(function (k) {
      var v = String(data.get(k) || "").trim();
      if (v) body[k] = v;
    });
    if (data.get("priority")) body.priority = Number(data.get("priority"));
    formStatus.textContent = "";
    api("POST", "/api/v1/incidents", body).then(function (inc) {
      formStatus.textContent = t("created");
      form.reset();
      if (pickMarker) { map.removeLayer(pickMarker); pickMarker = null; }
      incidents[inc.id] = inc;
      return select(inc.id);
    }).catch(function (err) {
      var p = err.problem;
      var detailText = p && p.errors && p.errors.length
        ? p.errors.map(function (x) { return x.field + ": " + x.reason; }).join("; ")
        : err.message;
      formStatus.textContent = t("failed", { detail: detailText });
    });
  });

  /* --- live ----------------------------------------------------------------------- */

  var pendingReload = null;
  function reloadSoon() {
    if (pendingReload) return;
    pendingReload = window.setTimeout(function () {
      pendingReload = null;
      loadIncidents().then(function () {
        if (selected) return refreshSelected();
      }).catch(function (err) { fail(null, err); });
    }, 400);
  }

  function onEvent(ev) {
    var p = ev.payload || {};
    if (ev.name.indexOf("anwang.dispatch.unit.") === 0 && p.unit_id) {
      placeUnit(p);
      if (ev.name !== "anwang.dispatch.unit.moved" && selected) reloadSoon();
    } else if (ev.name.indexOf("anwang.dispatch.incident.") === 0) {
      reloadSoon();
    } else if (ev.name === "anwang.dispatch.post.changed") {
      loadPosts().catch(function () {});
    }
  }

  function connect() {
    if (!window.EventSource) return;
    var es = new EventSource("/api/v1/stream?typed=false&names=anwang.dispatch.>");
    es.onopen = function () { stats.live = true; };
    es.onmessage = function (m) {
      try { onEvent(JSON.parse(m.data)); } catch (e) { /* not ours */ }
    };
    es.onerror = function () {
      stats.live = false;
      if (es.readyState === EventSource.CLOSED) window.setTimeout(connect, 5000);
    };
  }

  built.ready.then(function () {
    return Promise.all([loadPosts(), loadUnits(), loadIncidents()]);
  }).catch(function (err) { fail(null, err); }).then(function () {
    // "/dispatch?incident=<id>" (e.g. from an alert) opens that incident
    var wanted = new URLSearchParams(window.location.search).get("incident");
    if (wanted) return select(wanted);
  }).then(function () {
    stats.ready = true;
    connect();
  });
})();
