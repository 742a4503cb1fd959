/* The unit's phone page (templates/dispatch/phone.html): reload when something for this
 * unit arrives on the live stream — a new instruction, an assignment, a status change —
 * unless the officer is in the middle of pressing a button. */
(function () {
  "use strict";
  var root = document.querySelector(".phone[data-unit-id]");
  if (!root || !window.EventSource) return;
  var unitId = root.getAttribute("data-unit-id");
  var es = new EventSource("/api/v1/stream?typed=false&names=anwang.dispatch.>");
  es.onmessage = function (m) {
    var ev;
    try { ev = JSON.parse(m.data); } catch (e) { return; }
    var p = ev.payload || {};
    if (p.unit_id !== unitId || ev.name === "anwang.dispatch.unit.moved") return;
    es.close();
    window.setTimeout(function () { window.location.reload(); }, 300);
  };
})();
