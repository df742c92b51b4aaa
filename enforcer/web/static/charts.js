/* pathwatch route page: charts of one lane over the chosen span (uPlot), with the
   route's state changes and alarms on the same time axis and the thresholds as
   dashed lines (latency on a log scale, so 1 ms and a 500 ms limit both read); new windows and changes arrive from app.js's live events. */
"use strict";
(function () {
  const source = document.getElementById("chart-data");
  if (!source || !window.uPlot) return;
  const data = JSON.parse(source.textContent);
  const spanS = data.until - data.since;
  const skewS = Number(document.body.dataset.now) - Date.now() / 1000;
  const nowS = () => Date.now() / 1000 + skewS;
  const css = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

  const CHARTS = {
    latency: [
      ["min", "latency_min_ms"], ["mean", "latency_mean_ms"], ["median", "latency_median_ms"],
      ["p90", "latency_p90_ms"], ["max", "latency_max_ms"],
    ],
    loss: [["loss %", "loss_pct"]],
    error: [["error %", "error_pct"]],
    jitter: [["jitter", "jitter_ms"]],
  };
  const COLORS = ["#2f7ed8", "#8a6fd1", "#1aa179", "#e0892b", "#d6455d"];
  const LIMIT_COLORS = ["#b3261e", "#c77700", "#8e3ea8"];

  // State intervals [from, to, state] over the span, from the transitions.
  const transitions = data.transitions.slice();
  const alarms = new Map(data.alarms.map((a) => [a.id, a]));
  const charts = document.querySelector(".charts");
  let lastState = charts ? charts.dataset.state : "";

  function intervals() {
    const out = [];
    let state = transitions.length ? transitions[0].previous : lastState;
    let from = data.since;
    for (const t of transitions) {
      out.push([from, t.ts, state]);
      state = t.state;
      from = t.ts;
    }
    out.push([from, nowS() + 3600, state]);
    return out;
  }

  const bandPlugin = {
    hooks: {
      drawClear: [
        (u) => {
          const { ctx } = u;
          const { top, height } = u.bbox;
          ctx.save();
          for (const [from, to, state] of intervals()) {
            if (state !== "down" && state !== "probation") continue;
            const x0 = u.valToPos(Math.max(from, u.scales.x.min), "x", true);
            const x1 = u.valToPos(Math.min(to, u.scales.x.max), "x", true);
            if (x1 <= x0) continue;
            ctx.fillStyle = state === "down" ? "rgba(214,69,93,0.16)" : "rgba(224,137,43,0.16)";
            ctx.fillRect(x0, top, x1 - x0, height);
          }
          ctx.restore();
        },
      ],
      draw: [
        (u) => {
          const { ctx } = u;
          const { top, height } = u.bbox;
          ctx.save();
          ctx.lineWidth = 2 * devicePixelRatio;
          for (const a of alarms.values()) {
            for (const [ts, color] of [[a.raised_at, "#d6455d"], [a.cleared_at, "#1aa179"]]) {
              if (!ts || ts < u.scales.x.min || ts > u.scales.x.max) continue;
              const x = u.valToPos(ts, "x", true);
              ctx.strokeStyle = color;
              ctx.beginPath();
              ctx.moveTo(x, top);
              ctx.lineTo(x, top + height);
              ctx.stroke();
            }
          }
          ctx.restore();
        },
      ],
    },
  };

  const made = (window.pwCharts = {});

  function columns(name) {
    return [data.t, ...CHARTS[name].map(([, key]) => data.series[key])];
  }

  // Threshold lines across the whole chart, labelled at the right.
  function limitPlugin(limits) {
    return {
      hooks: {
        draw: [
          (u) => {
            const { ctx } = u;
            const { left, width } = u.bbox;
            ctx.textAlign = "right";
            ctx.textBaseline = "bottom";
            ctx.save();
            ctx.lineWidth = 1.5 * devicePixelRatio;
            ctx.setLineDash([6 * devicePixelRatio, 4 * devicePixelRatio]);
            ctx.font = 11 * devicePixelRatio + "px sans-serif";
            limits.forEach((l, i) => {
              const y = u.valToPos(l.value, "y", true);
              ctx.strokeStyle = ctx.fillStyle = LIMIT_COLORS[i % LIMIT_COLORS.length];
              ctx.beginPath();
              ctx.moveTo(left, y);
              ctx.lineTo(left + width, y);
              ctx.stroke();
              ctx.fillText(l.label + " " + l.value, left + width - 4 * devicePixelRatio, y - 2 * devicePixelRatio);
            });
            ctx.restore();
          },
        ],
      },
    };
  }

  // Log axes: grid lines and labels at 0.1, 1, 10, ... only.
  function powersOfTen(u, axis, min, max) {
    const out = [];
    for (let e = Math.ceil(Math.log10(min)); e <= Math.floor(Math.log10(max)); e += 1) out.push(10 ** e);
    return out;
  }

  // The y range takes in the thresholds, so the distance to them shows.
  function yRange(limits, log) {
    return (u, min, max) => {
      const top = Math.max(max ?? 0, ...limits.map((l) => l.value));
      if (log) return [Math.max(0.001, Math.min(min ?? 0.1, top) / 2), Math.max(top * 2, 1)];
      return [0, top > 0 ? top * 1.1 : 1];
    };
  }

  function build(name) {
    const el = document.getElementById("chart-" + name);
    if (!el) return;
    const fg = css("--fg") || "#000";
    const grid = css("--line") || "#ccc";
    const limits = data.limits.filter((l) => l.chart === name);
    const series = [
      {},
      ...CHARTS[name].map(([label], i) => ({ label, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: false })),
    ];
    const log = name === "latency";
    const axis = { stroke: fg, grid: { stroke: grid, width: 1 }, ticks: { stroke: grid } };
    const opts = {
      width: Math.max(280, el.clientWidth),
      height: 220,
      series,
      scales: {
        x: { time: true, range: () => [nowS() - spanS, nowS()] },
        y: { distr: log ? 3 : 1, range: yRange(limits, log) },
      },
      axes: [axis, { ...axis, size: 50, splits: log ? powersOfTen : undefined }],
      legend: { live: true },
      plugins: [bandPlugin, limitPlugin(limits)],
    };
    made[name] = new uPlot(opts, columns(name), el);
  }

  Object.keys(CHARTS).forEach(build);

  function redraw() {
    for (const name of Object.keys(made)) made[name].setData(columns(name));
  }

  document.addEventListener("pw:windows", (event) => {
    for (const w of event.detail.windows) {
      let i = data.t.length;
      while (i > 0 && data.t[i - 1] > w.t) i -= 1;
      const same = i > 0 && data.t[i - 1] === w.t;
      const at = same ? i - 1 : i;
      if (!same) data.t.splice(at, 0, w.t);
      for (const key of Object.keys(data.series)) {
        if (same) data.series[key][at] = w[key];
        else data.series[key].splice(at, 0, w[key]);
      }
    }
    redraw();
  });

  document.addEventListener("pw:route", (event) => {
    const d = event.detail;
    if (d.since && d.state !== lastState && lastState) {
      transitions.push({ ts: d.since, previous: lastState, state: d.state });
    }
    lastState = d.state;
    for (const a of d.alarms) alarms.set(a.id, a);
    redraw();
  });

  setInterval(redraw, 5000);
  window.addEventListener("resize", () => {
    for (const name of Object.keys(made)) {
      const el = document.getElementById("chart-" + name);
      made[name].setSize({ width: Math.max(280, el.clientWidth), height: 220 });
    }
  });
})();
