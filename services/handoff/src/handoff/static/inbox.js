// The inbox: times in the viewer's zone, ticking SLA badges, and lists that refresh
// themselves. No build step; the pages work without it (times then read in UTC).
(function () {
  "use strict";

  // The same words as inbox_pages.duration_text.
  function span(seconds) {
    var s = Math.floor(Math.abs(seconds));
    var d = Math.floor(s / 86400), h = Math.floor((s % 86400) / 3600);
    var m = Math.floor((s % 3600) / 60), r = s % 60;
    if (d) return d + "d " + h + "h";
    if (h) return h + "h " + m + "m";
    if (m) return m + "m " + r + "s";
    return r + "s";
  }

  var localFormat = new Intl.DateTimeFormat(undefined, {
    weekday: "short", month: "short", day: "numeric",
    hour: "numeric", minute: "2-digit", timeZoneName: "short"
  });

  // The server writes UTC; show the viewer's own time and keep UTC as the hover title.
  function localTimes(root) {
    root.querySelectorAll("time[datetime]").forEach(function (el) {
      if (el.getAttribute("data-local") === "1") return;
      var at = new Date(el.getAttribute("datetime"));
      if (isNaN(at.getTime())) return;
      el.title = el.textContent.trim();
      el.textContent = localFormat.format(at);
      el.setAttribute("data-local", "1");
    });
  }

  var LABELS = { "on-time": "On time", "at-risk": "At risk", "on-fire": "Breached" };
  var ICONS = { "on-time": "\u2713", "at-risk": "\u25d4", "on-fire": "\u26a0" };

  function tick() {
    var now = Date.now();
    document.querySelectorAll(".sla[data-due]").forEach(function (badge) {
      var due = Date.parse(badge.getAttribute("data-due"));
      var risk = Date.parse(badge.getAttribute("data-at-risk"));
      var left = (due - now) / 1000;
      // A handoff that breached before stays on fire whatever its new deadline says.
      if (!badge.hasAttribute("data-fire")) {
        var state = left <= 0 ? "on-fire" : now >= risk ? "at-risk" : "on-time";
        badge.className = "sla sla-" + state;
        var label = badge.querySelector(".sla-state");
        var icon = badge.querySelector(".sla-icon");
        if (label) label.textContent = LABELS[state];
        if (icon) icon.textContent = ICONS[state];
      }
      var count = badge.querySelector(".sla-countdown");
      if (count) {
        count.textContent = left <= 0 ? "overdue by " + span(left)
          : badge.hasAttribute("data-fire") ? "next deadline in " + span(left)
          : span(left) + " left";
      }
    });
    document.querySelectorAll("[data-since]").forEach(function (el) {
      el.textContent = span((now - Date.parse(el.getAttribute("data-since"))) / 1000) + " past due";
    });
  }

  // Not while someone is typing or has ticked rows to act on.
  function busy(box) {
    var active = document.activeElement;
    if (active && box.contains(active) && active.tagName !== "BUTTON" && active.tagName !== "A") {
      return true;
    }
    var form = box.closest("form");
    return !!(form && form.querySelector("input[type=checkbox]:checked"));
  }

  function cards(box) {
    return box.querySelectorAll("article.handoff").length;
  }

  function refresh() {
    document.querySelectorAll("[data-fragment]").forEach(function (box) {
      if (busy(box)) return;
      fetch(box.getAttribute("data-fragment"), { credentials: "same-origin" })
        .then(function (answer) {
          if (answer.status === 401) {
            var here = window.location.pathname + window.location.search;
            window.location.assign("/inbox/sign-in?next=" + encodeURIComponent(here));
            return null;
          }
          return answer.ok ? answer.text() : null;
        })
        .then(function (html) {
          if (html === null || html === undefined || busy(box)) return;
          var before = cards(box);
          box.innerHTML = html;
          localTimes(box);
          tick();
          // Announced once per change, not per refresh (the countdowns are not live regions).
          var after = cards(box);
          var news = document.getElementById("queue-news");
          if (news && after > before) {
            var added = after - before;
            news.textContent = added + " new handoff" + (added > 1 ? "s" : "") + " in your queue";
          }
        })
        .catch(function () {});
    });
  }

  localTimes(document);
  tick();
  setInterval(tick, 1000);
  setInterval(refresh, 5000);
})();
