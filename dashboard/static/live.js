// Live figures without a reload: poll /api/live and put each figure in place.
// Served by the dashboard itself (the CSP allows scripts from 'self' only).
"use strict";
(function () {
  const body = document.body;
  const period = parseInt(body.dataset.refreshMs || "5000", 10);
  if (!document.querySelector("[data-live]")) return;
  async function tick() {
    try {
      const response = await fetch("/api/live", { credentials: "same-origin", cache: "no-store" });
      if (!response.ok) return;
      const data = await response.json();
      for (const el of document.querySelectorAll("[data-live]")) {
        const value = data.figures[el.dataset.live];
        if (value !== undefined && el.textContent !== value) el.textContent = value;
      }
      for (const el of document.querySelectorAll("[data-live-chart]")) {
        const svg = data.charts[el.dataset.liveChart];
        // The SVG is built and escaped by the server (farthing.dashboard.charts).
        if (svg !== undefined) el.innerHTML = svg;
      }
      const tile = document.getElementById("audit-tile");
      if (tile) tile.className = "tile audit-" + data.figures.audit_status;
      body.dataset.liveUpdated = String(Date.now());
    } catch (err) {
      // The server may be restarting; the next tick tries again.
    }
  }
  setInterval(tick, period);
})();
