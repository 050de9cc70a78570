// The rep inbox: ticking SLA countdowns and a queue that refreshes itself. No build step.
(function () {
  "use strict";
  function fmt(seconds) {
    var s = Math.abs(Math.round(seconds));
    var h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
    return (h ? h + "h " : "") + (h || m ? m + "m " : "") + r + "s";
  }
  function tick() {
    var now = Date.now();
    document.querySelectorAll("[data-due]").forEach(function (el) {
      var due = Date.parse(el.getAttribute("data-due"));
      var risk = Date.parse(el.getAttribute("data-at-risk") || el.getAttribute("data-due"));
      var left = (due - now) / 1000;
      var state = left <= 0 ? "breached" : now >= risk ? "at-risk" : "on-time";
      var label = { "on-time": "On time", "at-risk": "At risk", "breached": "Breached" }[state];
      el.className = "sla sla-" + state;
      var text = el.querySelector(".sla-state");
      var count = el.querySelector(".sla-countdown");
      if (text) text.textContent = label;
      if (count) count.textContent = left > 0 ? fmt(left) + " left" : "overdue by " + fmt(left);
    });
  }
  function busy(queue) {
    var active = document.activeElement;
    return active && queue.contains(active) && active.tagName !== "BUTTON";
  }
  function refresh() {
    var queue = document.getElementById("queue");
    if (!queue || busy(queue)) return;
    fetch(queue.getAttribute("data-fragment"), { credentials: "same-origin" })
      .then(function (answer) {
        if (answer.status === 401) { window.location.assign("/inbox/sign-in"); return null; }
        return answer.ok ? answer.text() : null;
      })
      .then(function (html) {
        if (html === null || html === undefined || busy(queue)) return;
        var before = queue.querySelectorAll("article.handoff").length;
        queue.innerHTML = html;
        tick();
        // Announced once per change, not per refresh (the countdowns are not live regions).
        var after = queue.querySelectorAll("article.handoff").length;
        var news = document.getElementById("queue-news");
        if (news && after > before) {
          news.textContent = (after - before) + " new handoff" + (after - before > 1 ? "s" : "") + " in your queue";
        }
      })
      .catch(function () {});
  }
  tick();
  setInterval(tick, 1000);
  setInterval(refresh, 5000);
})();
