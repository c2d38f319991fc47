// cgsentry console: live updates of the incidents table (polling, first page only). No inline
// script anywhere (the CSP forbids it); the rows come from the server already escaped.
"use strict";
(function () {
  const table = document.querySelector("table[data-live]");
  if (!table) return;
  const body = table.querySelector("tbody");
  const url = table.dataset.live + window.location.search;
  const note = document.getElementById("live-note");
  async function refresh() {
    try {
      const resp = await fetch(url, { credentials: "same-origin", headers: { "Accept": "text/html" } });
      if (resp.status === 401 || resp.redirected) { note.textContent = "Session ended: log in again."; return; }
      if (resp.ok) {
        const html = await resp.text();
        if (html !== body.dataset.last) { body.innerHTML = html; body.dataset.last = html; }
        note.textContent = "Live: updated " + new Date().toLocaleTimeString();
      }
    } catch (err) {
      note.textContent = "Live updates paused (" + err + ")";
    }
    window.setTimeout(refresh, 3000);
  }
  window.setTimeout(refresh, 3000);
})();
