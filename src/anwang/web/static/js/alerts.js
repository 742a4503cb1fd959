/* Watch-list alerts on the live dashboard: a sound, a red marker, a richer feed line.
 *
 * feed.js re-dispatches every stream event as "anwang:event"; map.js, after dropping a
 * marker for an event with lat/lon, dispatches "anwang:marker" with the Leaflet marker.
 * This script listens to both for the alert events of anwang/alerts/events.py (raised,
 * updated, escalated; their payload is built by events.payload there — keep the two in
 * step):
 *
 *  - raised and escalated alerts beep (WebAudio, two short tones; no audio file). Browsers
 *    allow sound only after the user has interacted with the page, so the context is
 *    resumed on the first click or key press; the ♪ button in the feed's header turns
 *    the sound off and on (remembered in localStorage);
 *  - their marker turns red and gets a popup with the plate, the reason and a link to the
 *    alert page (/alerts/<id>);
 *  - their feed line gets the translated reason, match kind and direction, the banner
 *    "unconfirmed — verify ..." and the link.
 *
 * Texts come from /alerts/client.json in the reader's language. window.anwangAlerts
 * counts what happened (the browser test reads it).
 */
(function () {
  "use strict";

  var RAISED = "anwang.alerts.alert.raised";
  var UPDATED = "anwang.alerts.alert.updated";
  var ESCALATED = "anwang.alerts.alert.escalated";
  var ALERT_EVENTS = {};
  ALERT_EVENTS[RAISED] = true;
  ALERT_EVENTS[UPDATED] = true;
  ALERT_EVENTS[ESCALATED] = true;
  var SOUND_KEY = "anwang.alertSound";

  var state = (window.anwangAlerts = { raised: 0, updated: 0, escalated: 0, beeps: 0, markers: 0, last: null });
  var texts = { messages: {}, reasons: {}, kinds: {}, directions: {} };
  var pending = [];
  var textsReady = false;

  // The stylesheet of the alert markers and feed lines (the dashboard links only app.css).
  (function addStyles() {
    var probe = document.querySelector('link[href*="css/app.css"]');
    var href = "/static/css/alerts.css" + (probe ? probe.getAttribute("href").replace(/^[^?]*/, "") : "");
    if (document.querySelector('link[href^="/static/css/alerts.css"]')) return;
    var link = document.createElement("link");
    link.rel = "stylesheet";
    link.href = href;
    document.head.appendChild(link);
  })();

  function msg(key, fallback) { return texts.messages[key] || fallback || key; }
  function label(table, key) { return (texts[table] || {})[key] || key || ""; }

  fetch("/alerts/client.json", { credentials: "same-origin", headers: { Accept: "application/json" } })
    .then(function (r) { return r.ok ? r.json() : {}; })
    .catch(function () { return {}; })
    .then(function (t) {
      texts.messages = t.messages || {};
      texts.reasons = t.reasons || {};
      texts.kinds = t.kinds || {};
      texts.directions = t.directions || {};
      texts.canHandle = t.can_handle !== false;
      textsReady = true;
      updateSoundButton();
      pending.splice(0).forEach(function (f) { f(); });
    });

  function whenTexts(f) { if (textsReady) f(); else pending.push(f); }

  /* --- sound ------------------------------------------------------------------------ */

  var audio = null;
  function soundOn() {
    try { return window.localStorage.getItem(SOUND_KEY) !== "off"; } catch (e) { return true; }
  }
  function context() {
    var Ctx = window.AudioContext || window.webkitAudioContext;
    if (!Ctx) return null;
    if (!audio) {
      try { audio = new Ctx(); } catch (e) { return null; }
    }
    return audio;
  }
  function unlock() {
    var ctx = context();
    if (ctx && ctx.state === "suspended" && ctx.resume) ctx.resume();
  }
  document.addEventListener("click", unlock, { capture: true });
  document.addEventListener("keydown", unlock, { capture: true });

  function tone(ctx, start, freq) {
    var osc = ctx.createOscillator();
    var gain = ctx.createGain();
    osc.type = "square";
    osc.frequency.value = freq;
    gain.gain.setValueAtTime(0.0001, start);
    gain.gain.exponentialRampToValueAtTime(0.2, start + 0.01);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + 0.16);
    osc.connect(gain);
    gain.connect(ctx.destination);
    osc.start(start);
    osc.stop(start + 0.18);
  }
  function beep(escalated) {
    if (!soundOn()) return;
    state.beeps += 1;
    // Before the first gesture there is no context (browsers would refuse to play).
    var ctx = audio;
    if (!ctx || ctx.state !== "running") return;
    var t0 = ctx.currentTime + 0.01;
    tone(ctx, t0, escalated ? 660 : 880);
    tone(ctx, t0 + 0.22, escalated ? 660 : 1175);
    if (escalated) tone(ctx, t0 + 0.44, 660);
  }

  var soundButton = null;
  function updateSoundButton() {
    if (!soundButton) return;
    var on = soundOn();
    soundButton.setAttribute("aria-pressed", on ? "true" : "false");
    soundButton.textContent = "♪";
    soundButton.title = on ? msg("sound_on", "Alert sound on") : msg("sound_off", "Alert sound off");
    soundButton.setAttribute("aria-label", soundButton.title);
  }
  (function addSoundButton() {
    var head = document.querySelector(".feed-head");
    if (!head) return;
    soundButton = document.createElement("button");
    soundButton.type = "button";
    soundButton.className = "sound-toggle";
    soundButton.id = "alert-sound";
    soundButton.addEventListener("click", function () {
      try { window.localStorage.setItem(SOUND_KEY, soundOn() ? "off" : "on"); } catch (e) { /* private mode */ }
      updateSoundButton();
    });
    head.appendChild(soundButton);
    updateSoundButton();
  })();

  /* --- the feed line ---------------------------------------------------------------- */

  function alertLink(p) {
    var a = document.createElement("a");
    a.className = "feed-alert-link";
    a.href = p.url || ("/alerts/" + encodeURIComponent(p.alert_id || ""));
    a.textContent = msg("open_alert", "Open the alert");
    a.addEventListener("click", function (e) { e.stopPropagation(); });
    return a;
  }

  function decorateFeed(detail) {
    var p = detail.payload || {};
    var item = document.querySelector('.feed-item[data-event-id="' + detail.id + '"]');
    if (!item) return;
    item.classList.add("feed-alert", "feed-alert-p" + (p.priority || 3));
    if (detail.name === ESCALATED) item.classList.add("feed-alert-escalated");
    item.setAttribute("data-alert-id", p.alert_id || "");
    var facts = [label("reasons", p.reason), label("kinds", p.match_kind)];
    if (p.direction) facts.push(label("directions", p.direction));
    if (p.vehicle_description) facts.push(p.vehicle_description);
    if (detail.name === ESCALATED) facts.unshift(msg("escalated"));
    var line = document.createElement("p");
    line.className = "feed-summary feed-alert-facts";
    line.textContent = facts.filter(Boolean).join(" · ");
    item.appendChild(line);
    var banner = document.createElement("p");
    banner.className = "feed-summary feed-alert-banner";
    banner.textContent = "⚠ " + msg("banner", p.banner);
    item.appendChild(banner);
    if (texts.canHandle) item.appendChild(alertLink(p));
  }

  /* --- the marker ------------------------------------------------------------------- */

  function popup(p) {
    var box = document.createElement("div");
    box.className = "alert-popup";
    var plate = document.createElement("div");
    plate.className = "alert-popup-plate";
    plate.textContent = p.plate || "";
    var facts = document.createElement("div");
    facts.textContent = [label("reasons", p.reason), label("kinds", p.match_kind),
                         p.checkpoint_name, label("directions", p.direction)]
      .filter(Boolean).join(" · ");
    var banner = document.createElement("div");
    banner.className = "alert-popup-banner";
    banner.textContent = msg("banner", p.banner);
    box.appendChild(plate);
    box.appendChild(facts);
    box.appendChild(banner);
    if (texts.canHandle) box.appendChild(alertLink(p));
    return box;
  }

  document.addEventListener("anwang:marker", function (e) {
    var d = e.detail || {};
    var ev = d.event || {};
    if (!ALERT_EVENTS[ev.name] || !d.marker) return;
    var p = ev.payload || {};
    state.markers += 1;
    var el = d.marker.getElement && d.marker.getElement();
    if (el) {
      el.classList.add("alert-marker");
      el.setAttribute("data-alert-id", p.alert_id || "");
    }
    whenTexts(function () {
      d.marker.bindPopup(function () { return popup(p); });
      if (ev.name !== UPDATED && d.marker.openPopup) d.marker.openPopup();
    });
  });

  document.addEventListener("anwang:event", function (e) {
    var d = e.detail || {};
    if (!ALERT_EVENTS[d.name]) return;
    var p = d.payload || {};
    state.last = p;
    if (d.name === RAISED) state.raised += 1;
    else if (d.name === UPDATED) state.updated += 1;
    else state.escalated += 1;
    if (d.name !== UPDATED) beep(d.name === ESCALATED);
    whenTexts(function () { decorateFeed(d); });
  });
})();
