/* The live event feed of the dashboard.
 *
 * Connects to the SSE endpoint (anwang/web/stream.py) with the session cookie, shows the
 * newest event first, keeps at most MAX_ITEMS, shows the connection state and reconnects
 * on its own. The browser's EventSource retries a dropped connection by itself; when it
 * gives up (an HTTP error, e.g. after a server restart) we open a new one with back-off.
 *
 * The stream is opened with typed=false: every event then arrives as a plain "message"
 * (EventSource has no wildcard listener for named events); its name is in the data.
 * Each event is re-dispatched on the document as "anwang:event" for map.js.
 */
(function () {
  "use strict";

  var list = document.getElementById("feed-list");
  var stateEl = document.getElementById("feed-state");
  if (!list || !window.EventSource) return;

  var i18n = readJson("anwang-i18n");
  var msg = i18n.messages || {};
  var eventLabels = i18n.events || {};
  var MAX_ITEMS = 200;
  var STREAM_URL = "/api/v1/stream?typed=false";
  var SUMMARY_KEYS = ["summary", "message", "title", "text", "description", "plate", "kind", "status"];
  var SKIP_KEYS = { lat: 1, lon: 1, jurisdiction: 1 };

  var timeFormat;
  try {
    timeFormat = new Intl.DateTimeFormat(document.documentElement.getAttribute("lang") || "zh-CN", {
      hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false
    });
  } catch (e) {
    timeFormat = null;
  }

  function readJson(id) {
    var node = document.getElementById(id);
    if (!node) return {};
    try { return JSON.parse(node.textContent || "{}"); } catch (e) { return {}; }
  }

  function t(key, fallback) { return msg[key] || fallback || key; }

  function setState(state) {
    if (!stateEl) return;
    stateEl.setAttribute("data-state", state);
    stateEl.textContent = t(state);
  }

  function label(name) {
    return eventLabels[name] || name;
  }

  function clip(s, n) {
    s = String(s);
    return s.length > n ? s.slice(0, n - 1) + "…" : s;
  }

  /* A short line from the payload: a known descriptive field if there is one, else the
     first few scalar fields as key=value. */
  function summarise(payload) {
    if (!payload || typeof payload !== "object") return "";
    for (var i = 0; i < SUMMARY_KEYS.length; i++) {
      var v = payload[SUMMARY_KEYS[i]];
      if (typeof v === "string" && v) return clip(v, 140);
    }
    var parts = [];
    Object.keys(payload).forEach(function (k) {
      var v = payload[k];
      if (SKIP_KEYS[k] || parts.length >= 4) return;
      if (v === null || typeof v === "object") return;
      parts.push(k + "=" + clip(v, 40));
    });
    return parts.join(" · ");
  }

  function formatTime(iso) {
    var d = new Date(iso);
    if (isNaN(d.getTime())) return "";
    return timeFormat ? timeFormat.format(d) : d.toISOString().slice(11, 19);
  }

  function hasPlace(p) {
    return p && typeof p.lat === "number" && typeof p.lon === "number";
  }

  function render(ev) {
    var li = document.createElement("li");
    li.className = "feed-item";
    li.setAttribute("data-event-id", ev.id || "");
    li.setAttribute("data-event-name", ev.name || "");

    var time = document.createElement("time");
    time.setAttribute("datetime", ev.occurred_at || "");
    time.textContent = formatTime(ev.occurred_at);

    var name = document.createElement("span");
    name.className = eventLabels[ev.name] ? "feed-name" : "feed-name feed-name-raw";
    name.textContent = label(ev.name);
    name.title = ev.name || "";

    li.appendChild(time);
    li.appendChild(name);

    var summary = summarise(ev.payload);
    if (summary) {
      var p = document.createElement("p");
      p.className = "feed-summary";
      p.textContent = summary;
      li.appendChild(p);
    }
    if (hasPlace(ev.payload)) {
      li.classList.add("has-place");
      li.tabIndex = 0;
      var place = document.createElement("span");
      place.className = "feed-place";
      place.textContent = t("show_on_map");
      li.appendChild(place);
      var focus = function () {
        document.dispatchEvent(new CustomEvent("anwang:focus", {
          detail: { lat: ev.payload.lat, lon: ev.payload.lon }
        }));
      };
      li.addEventListener("click", focus);
      li.addEventListener("keydown", function (e) { if (e.key === "Enter") focus(); });
    }
    return li;
  }

  var seen = {};
  function add(ev) {
    if (!ev || !ev.name) return;
    if (ev.id) {
      if (seen[ev.id]) return;            // a reconnect may repeat an event
      seen[ev.id] = true;
    }
    var empty = list.querySelector(".feed-empty");
    if (empty) empty.remove();
    list.insertBefore(render(ev), list.firstChild);
    while (list.children.length > MAX_ITEMS) {
      var last = list.lastElementChild;
      delete seen[last.getAttribute("data-event-id")];
      list.removeChild(last);
    }
    document.dispatchEvent(new CustomEvent("anwang:event", {
      detail: { id: ev.id, name: ev.name, label: label(ev.name), payload: ev.payload || {} }
    }));
  }

  var source = null;
  var backoff = 1000;
  var timer = null;

  function connect() {
    timer = null;
    source = new EventSource(STREAM_URL, { withCredentials: true });
    source.onopen = function () {
      backoff = 1000;
      setState("connected");
    };
    source.onmessage = function (m) {
      var ev;
      try { ev = JSON.parse(m.data); } catch (e) { return; }
      add(ev);
    };
    source.onerror = function () {
      setState("reconnecting");
      if (source.readyState === EventSource.CLOSED) {
        // The browser gave up (an HTTP error). If the session has ended, go and sign in
        // again; otherwise (a restart, a proxy hiccup) try again ourselves, more slowly.
        source.close();
        if (timer) return;
        timer = window.setTimeout(function () {
          fetch("/api/v1/me", { credentials: "same-origin" }).then(function (r) {
            if (r.status === 401) {
              window.location.assign("/login?next=" + encodeURIComponent(window.location.pathname));
              return;
            }
            connect();
          }, connect);
        }, backoff);
        backoff = Math.min(backoff * 2, 30000);
      }
    };
  }

  window.addEventListener("pagehide", function () { if (source) source.close(); });
  window.addEventListener("pageshow", function (e) {
    if (e.persisted && (!source || source.readyState === EventSource.CLOSED)) connect();
  });
  setState("connecting");
  connect();
  window.anwangFeed = { add: add, state: function () { return stateEl && stateEl.getAttribute("data-state"); } };
})();
