/* Small behaviours shared by every page: local times and the user menu.
   Loaded without defer at the end of <body>; no inline script is needed (see the
   Content-Security-Policy in anwang/web/templating.py). */
(function () {
  "use strict";

  var locale = document.documentElement.getAttribute("lang") || "zh-CN";

  /* The server writes UTC; show the reader's local time and keep UTC in the tooltip. */
  function localiseTimes(root) {
    var fmt;
    try {
      fmt = new Intl.DateTimeFormat(locale, {
        year: "numeric", month: "2-digit", day: "2-digit",
        hour: "2-digit", minute: "2-digit", second: "2-digit", hour12: false
      });
    } catch (e) {
      return;
    }
    var nodes = (root || document).querySelectorAll("time[data-local]");
    for (var i = 0; i < nodes.length; i++) {
      var el = nodes[i];
      var d = new Date(el.getAttribute("datetime"));
      if (isNaN(d.getTime())) continue;
      el.title = el.textContent;
      el.textContent = fmt.format(d);
      el.removeAttribute("data-local");
    }
  }

  localiseTimes(document);
  // Rows added by "load more" are localised too (only unconverted times are touched).
  document.addEventListener("htmx:afterSettle", function () { localiseTimes(document); });

  /* Close the user menu on a click elsewhere or on Escape. */
  document.addEventListener("click", function (e) {
    var menus = document.querySelectorAll("details.user-menu[open]");
    for (var i = 0; i < menus.length; i++) {
      if (!menus[i].contains(e.target)) menus[i].removeAttribute("open");
    }
  });
  document.addEventListener("keydown", function (e) {
    if (e.key !== "Escape") return;
    var menus = document.querySelectorAll("details.user-menu[open]");
    for (var i = 0; i < menus.length; i++) menus[i].removeAttribute("open");
  });
})();
