/* pathwatch status page: relative times, filter boxes and live updates
   (server-sent events; the browser reconnects by itself). No dependencies. */
"use strict";
(function () {
  const body = document.body;
  // Server clock minus browser clock, so countdowns follow the server.
  const skewMs = Number(body.dataset.now) * 1000 - Date.now();
  const nowS = () => (Date.now() + skewMs) / 1000;

  function span(seconds) {
    let s = Math.max(0, Math.round(seconds));
    const parts = [];
    for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60]]) {
      if (s >= size) { parts.push(Math.floor(s / size) + unit); s %= size; }
    }
    if (parts.length < 2) parts.push(s + "s");
    return parts.slice(0, 2).join(" ");
  }

  function tick(root) {
    const now = nowS();
    for (const el of (root || document).querySelectorAll("time[data-ts]")) {
      const ts = Number(el.dataset.ts);
      const mode = el.dataset.mode;
      if (!el.title) el.title = el.textContent;  // the absolute time the server wrote
      if (mode === "until") el.textContent = ts > now ? span(ts - now) + " left" : "due";
      else if (mode === "for") el.textContent = span(now - ts);
      else el.textContent = span(now - ts) + " ago";
    }
  }

  const filter = document.getElementById("filter");
  function applyFilter() {
    if (!filter) return;
    const words = filter.value.toLowerCase().split(/\s+/).filter(Boolean);
    const rows = document.querySelectorAll(filter.dataset.filter);
    let shown = 0;
    for (const row of rows) {
      const text = (row.textContent + " " + (row.dataset.key || "")).toLowerCase();
      const match = words.every((w) => text.includes(w));
      row.hidden = !match;
      if (match) shown += 1;
    }
    for (const section of document.querySelectorAll("section.service")) {
      section.hidden = words.length > 0 && !section.querySelector("tbody tr:not([hidden])");
    }
    const count = document.getElementById("filter-count");
    if (count) count.textContent = words.length ? shown + " of " + rows.length + " shown" : "";
  }
  if (filter) {
    let timer = 0;
    filter.addEventListener("input", () => { clearTimeout(timer); timer = setTimeout(applyFilter, 80); });
    applyFilter();
  }

  function replaceRow(id, html) {
    const old = document.getElementById(id);
    if (!old) return;
    const holder = document.createElement("tbody");
    holder.innerHTML = html;
    const row = holder.firstElementChild;
    if (!row) return;
    const was = old.querySelector(".state");
    const now = row.querySelector(".state");
    if (was && now && was.textContent !== now.textContent) row.classList.add("changed");
    old.replaceWith(row);
    tick(row);
  }

  function replaceInner(id, html) {
    const el = document.getElementById(id);
    if (el) { el.innerHTML = html; tick(el); }
  }

  // Counters the tests and `pathwatch bench ui` read.
  const live = (window.pwLive = { events: 0, lastEventAt: 0, lastEvent: "" });
  const status = document.getElementById("live");
  function setStatus(text, on) {
    if (!status) return;
    status.textContent = text;
    status.className = "live " + (on ? "on" : "off");
  }

  const handlers = {
    rows(data) { for (const [id, html] of Object.entries(data.rows)) replaceRow(id, html); },
    alarms(data) { replaceInner("alarm-tables", data.html); },
    route(data) {
      replaceInner("route-state", data.html);
      replaceInner("route-alarms", data.alarms_html);
      document.dispatchEvent(new CustomEvent("pw:route", { detail: data }));
    },
    windows(data) { document.dispatchEvent(new CustomEvent("pw:windows", { detail: data })); },
  };

  function connect(url) {
    const source = new EventSource(url);
    source.onopen = () => setStatus("live", true);
    source.onerror = () => {
      if (source.readyState === EventSource.CLOSED) {
        setStatus("disconnected, retrying", false);
        setTimeout(() => connect(url), 5000);
      } else {
        setStatus("reconnecting", false);
      }
    };
    for (const [name, handle] of Object.entries(handlers)) {
      source.addEventListener(name, (event) => {
        handle(JSON.parse(event.data));
        live.events += 1;
        live.lastEventAt = Date.now();
        live.lastEvent = name;
        applyFilter();
      });
    }
  }

  tick();
  setInterval(tick, 1000);
  if (body.dataset.events && window.EventSource) connect(body.dataset.events);
})();
