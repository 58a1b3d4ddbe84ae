// Live updates: poll the page's JSON; patch the live numbers in place, or
// fetch the page again and swap <main> when what is drawn changed.
(function () {
  "use strict";
  var body = document.body;
  var api = body.getAttribute("data-api");
  var every = parseInt(body.getAttribute("data-refresh"), 10) || 0;
  var shape = body.getAttribute("data-shape");
  var conn = document.getElementById("conn");
  if (!api || every <= 0 || !window.fetch) { return; }

  function state(cls, text) {
    if (!conn) { return; }
    conn.className = "conn " + cls;
    conn.textContent = text;
  }

  function patch(live) {
    var els = document.querySelectorAll("[data-live]");
    for (var i = 0; i < els.length; i++) {
      var v = live[els[i].getAttribute("data-live")];
      if (typeof v === "string" && els[i].textContent !== v) { els[i].textContent = v; }
    }
  }

  function swap() {
    return fetch(location.href, { cache: "no-store", headers: { Accept: "text/html" } })
      .then(function (r) { return r.text(); })
      .then(function (html) {
        var doc = new DOMParser().parseFromString(html, "text/html");
        var fresh = doc.querySelector("main");
        var old = document.querySelector("main");
        if (fresh && old) {
          // Keep open <details> open across the swap.
          var open = {};
          old.querySelectorAll("details[open] summary").forEach(function (s) { open[s.textContent] = true; });
          fresh.querySelectorAll("details summary").forEach(function (s) { if (open[s.textContent]) { s.parentNode.open = true; } });
          old.replaceWith(fresh);
        }
        shape = doc.body.getAttribute("data-shape") || shape;
      });
  }

  function tick() {
    fetch(api, { cache: "no-store", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok && r.status !== 404) { throw new Error("status " + r.status); }
        return r.json();
      })
      .then(function (j) {
        if (j.shape !== shape) { return swap(); }
        patch(j.live || {});
      })
      .then(function () { state("live", "live"); }, function () { state("stale", "reconnecting"); })
      .then(function () { setTimeout(tick, every); });
  }
  state("live", "live");
  setTimeout(tick, every);
})();
