// histodiff run report: follow in-page links (open collapsed parents, highlight the
// target), nothing else. No network, no libraries.
(function () {
  "use strict";

  function targetOf(hash) {
    if (!hash || hash.length < 2) return null;
    var id = hash.slice(1);
    try { id = decodeURIComponent(id); } catch (e) { /* keep it as written */ }
    return document.getElementById(id);
  }

  function reveal(el) {
    for (var p = el.parentElement; p; p = p.parentElement) {
      if (p.tagName === "DETAILS") p.open = true;
    }
    el.classList.add("flash");
    window.setTimeout(function () { el.classList.remove("flash"); }, 1600);
    el.scrollIntoView({ block: "start" });
  }

  function follow() {
    var el = targetOf(window.location.hash);
    if (el) reveal(el);
  }

  window.addEventListener("hashchange", follow);
  document.addEventListener("DOMContentLoaded", follow);
})();
