/* The response-circle page (templates/dispatch/coverage.html).
 *
 * Draws the combined 1/3/5-minute reachable areas of the quick-response posts
 * (GET /api/v1/coverage/isochrones?combined=true), the posts, and a post's own areas on
 * click; fills the share table from GET /api/v1/coverage/analysis; and, for planners,
 * runs POST /api/v1/coverage/optimize and shows today's siting beside the proposed one:
 * shares, districts, moves (lines on the map), the areas newly and no longer covered,
 * and links to the plan as GeoJSON and CSV. State is published in window.anwangCoverage.
 */
(function () {
  "use strict";

  var D = window.AnwangDispatch;
  var el = document.getElementById("coverage-map");
  if (!D || !el || !window.L) return;
  var t = D.t, api = D.api;
  var BAND = { 5: "#9ecae1", 3: "#4292c6", 1: "#08519c" };
  var stats = (window.anwangCoverage = { ready: false, areas: 0, posts: 0, plan: null,
                                          computing: false });

  var built = D.create(el);
  var map = built.map;
  var areaLayer = L.featureGroup().addTo(map);
  var postLayer = L.featureGroup().addTo(map);
  var oneLayer = L.featureGroup().addTo(map);
  var planLayer = L.featureGroup().addTo(map);

  function node(tag, cls, text) {
    var n = document.createElement(tag);
    if (cls) n.className = cls;
    if (text !== undefined && text !== null) n.textContent = text;
    return n;
  }

  function colour(m) { return BAND[m] || "#6baed6"; }

  function drawAreas() {
    return api("GET", "/api/v1/coverage/isochrones?combined=true&minutes=1,3,5").then(function (fc) {
      areaLayer.clearLayers();
      areaLayer.addLayer(L.geoJSON(fc, { interactive: false, style: function (f) {
        var m = f.properties.minutes;
        return { stroke: false, fillColor: colour(m), fillOpacity: 0.35 };
      } }));
      stats.areas = fc.features.length;
    });
  }

  function drawPost(code) {
    api("GET", "/api/v1/coverage/isochrones?minutes=1,3,5&post=" + encodeURIComponent(code))
      .then(function (fc) {
        oneLayer.clearLayers();
        oneLayer.addLayer(L.geoJSON(fc, { interactive: false, style: function (f) {
          return { color: colour(f.properties.minutes), weight: 2, fill: false };
        } }));
      }).catch(function () {});
  }

  function drawPosts() {
    return api("GET", "/api/v1/posts").then(function (posts) {
      postLayer.clearLayers();
      posts.forEach(function (p) {
        var quick = p.kind === "quick_response";
        var m = L.circleMarker([p.lat, p.lon], {
          radius: quick ? 5 : 3, color: quick ? "#0f2747" : "#c2410c", weight: 2,
          fillColor: "#fff", fillOpacity: 1
        });
        m.bindTooltip(p.code + " · " + p.name + (p.circle ? " · " + p.circle : ""));
        if (quick) m.on("click", function () { drawPost(p.code); });
        postLayer.addLayer(m);
      });
      stats.posts = posts.length;
    });
  }

  /* Give every cell of a filled table body its column's heading as data-label, which
     the stacked layout of narrow screens shows before the value. */
  function labelCells(tbody) {
    var heads = tbody.parentNode.querySelectorAll("thead th");
    Array.prototype.forEach.call(tbody.rows, function (tr) {
      Array.prototype.forEach.call(tr.cells, function (td, i) {
        if (heads[i] && td.colSpan === 1) td.setAttribute("data-label", heads[i].textContent);
      });
    });
  }

  function shareRow(tbody, name, values) {
    var tr = node("tr");
    tr.appendChild(node("td", "", name));
    values.forEach(function (v) { tr.appendChild(node("td", "num", D.percent(v))); });
    tbody.appendChild(tr);
  }

  function fillShares() {
    var tbody = document.getElementById("share-rows");
    return api("GET", "/api/v1/coverage/analysis?minutes=1,3,5").then(function (a) {
      tbody.textContent = "";
      shareRow(tbody, t("city"), a.thresholds.map(function (x) { return x.share; }));
      a.thresholds[0].districts.forEach(function (d, i) {
        shareRow(tbody, d.name, a.thresholds.map(function (x) { return x.districts[i].share; }));
      });
      labelCells(tbody);
      stats.shares = a.thresholds.map(function (x) { return x.share; });
    }).catch(function (err) {
      tbody.textContent = "";
      var tr = node("tr", "empty-row");
      var td = node("td", "", t("failed", { detail: err.message }));
      td.colSpan = 4;
      tr.appendChild(td);
      tbody.appendChild(tr);
    });
  }

  /* --- re-siting ------------------------------------------------------------------ */

  function site(s) {
    return s.code ? s.code : s.lat.toFixed(5) + ", " + s.lon.toFixed(5);
  }

  function showPlan(plan) {
    stats.plan = plan.plan_id || null;
    var box = document.getElementById("plan");
    box.hidden = false;
    var facts = document.getElementById("plan-facts");
    facts.textContent = "";
    [[t("before"), D.percent(plan.covered_share_before, 2)],
     [t("after"), D.percent(plan.covered_share_after, 2)],
     [t("gap"), plan.gap === null ? "—" : D.percent(plan.gap, 3)],
     [t("newly_covered"), D.percent(plan.newly_covered.share, 2)],
     [t("no_longer_covered"), D.percent(plan.no_longer_covered.share, 2)]]
      .forEach(function (kv) {
        facts.appendChild(node("dt", "", kv[0]));
        facts.appendChild(node("dd", "", kv[1]));
      });
    var dist = document.getElementById("plan-districts");
    dist.textContent = "";
    plan.districts.forEach(function (d) {
      var tr = node("tr");
      tr.appendChild(node("td", "", d.name));
      tr.appendChild(node("td", "num", D.percent(d.share_before)));
      tr.appendChild(node("td", "num", D.percent(d.share_after)));
      dist.appendChild(tr);
    });
    labelCells(dist);
    var moves = document.getElementById("plan-moves");
    moves.textContent = "";
    planLayer.clearLayers();
    plan.moves.forEach(function (m) {
      var tr = node("tr");
      tr.appendChild(node("td", "", m.from ? site(m.from) : t("opened_post")));
      tr.appendChild(node("td", "", m.to ? site(m.to) : t("closed_post")));
      tr.appendChild(node("td", "num", m.distance_m === null ? "" :
                          (m.distance_m / 1000).toFixed(2) + " km"));
      moves.appendChild(tr);
      if (m.from && m.to) {
        planLayer.addLayer(L.polyline([[m.from.lat, m.from.lon], [m.to.lat, m.to.lon]],
                                      { color: "#e5383b", weight: 2, dashArray: "4 4" }));
      }
    });
    labelCells(moves);
    plan.sites.forEach(function (s) {
      planLayer.addLayer(L.circleMarker([s.lat, s.lon], {
        radius: 6, color: "#e5383b", weight: 2, fillColor: "#e5383b", fillOpacity: 0.6
      }).bindTooltip(t("after") + ": " + site(s) + (s.kept ? " (" + t("kept") + ")" : "")));
    });
    if (plan.plan_id) {
      document.getElementById("plan-geojson").href =
        "/api/v1/coverage/plans/" + plan.plan_id + "?format=geojson";
      document.getElementById("plan-csv").href =
        "/api/v1/coverage/plans/" + plan.plan_id + "?format=csv";
      api("GET", "/api/v1/coverage/plans/" + plan.plan_id + "?format=geojson")
        .then(function (fc) {
          planLayer.addLayer(L.geoJSON({ type: "FeatureCollection",
            features: fc.features.filter(function (f) { return f.properties.area; }) },
            { interactive: false, style: function (f) {
              var gained = f.properties.area === "newly_covered";
              return { stroke: false, fillColor: gained ? "#1e9e4a" : "#b42318",
                       fillOpacity: 0.45 };
            } }));
        }).catch(function () {});
    }
  }

  var opt = document.getElementById("optimize-form");
  if (opt) {
    opt.addEventListener("submit", function (e) {
      e.preventDefault();
      var data = new FormData(opt);
      var status = document.getElementById("optimize-status");
      var keep = String(data.get("keep") || "").split(",").map(function (s) { return s.trim(); })
        .filter(Boolean);
      var body = { p: Number(data.get("p")), minutes: Number(data.get("minutes")), keep: keep,
                   time_limit_s: Number(data.get("time_limit_s") || 60),
                   max_candidates: Number(data.get("max_candidates") || 2000) };
      // the solver runs for up to the time limit: show the seconds gone against it
      var bar = document.getElementById("optimize-progress");
      var limit = body.time_limit_s > 0 ? body.time_limit_s : 60;
      var started = Date.now();
      function tick() {
        var gone = Math.floor((Date.now() - started) / 1000);
        status.textContent = t("computing_for", { s: gone, limit: limit });
        bar.max = limit;
        bar.value = Math.min(gone, limit);
      }
      bar.hidden = false;
      tick();
      var timer = window.setInterval(tick, 1000);
      stats.computing = true;
      var button = opt.querySelector("button");
      button.disabled = true;
      api("POST", "/api/v1/coverage/optimize", body).then(function (plan) {
        status.textContent = "";
        showPlan(plan);
      }).catch(function (err) {
        var p = err.problem;
        status.textContent = t("failed", { detail: p && p.errors && p.errors.length
          ? p.errors.map(function (x) { return x.field + ": " + x.reason; }).join("; ")
          : err.message });
      }).then(function () {
        window.clearInterval(timer);
        bar.hidden = true;
        stats.computing = false;
        button.disabled = false;
      });
    });
  }

  built.ready.then(function () {
    return Promise.all([drawAreas(), drawPosts(), fillShares()]);
  }).catch(function () {}).then(function () { stats.ready = true; });
})();
