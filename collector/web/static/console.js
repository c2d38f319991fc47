// cgsentry console: live updates of a table (polling: the incidents' first page, the sensors), and
// what an image's mode switch will do, shown as the mode and action are chosen. No inline script
// anywhere (the CSP forbids it); rows come from the server already escaped, effects are set as text.
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
(function () {
  for (const form of document.querySelectorAll("form.mode-form")) {
    const effects = JSON.parse(form.dataset.effects || "{}");
    const mode = form.querySelector("select[name=mode]");
    const action = form.querySelector("select[name=action]");
    const out = form.querySelector("output.effect");
    const show = () => { out.textContent = effects[mode.value + "|" + action.value] || ""; };
    mode.addEventListener("change", show);
    action.addEventListener("change", show);
    show();
  }
})();
