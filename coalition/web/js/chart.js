// A small time-series chart drawn as SVG by our own code: step lines for counts, bars for
// per-bucket totals, a time axis, gridlines, a legend and a hover read-out.

import { h, s } from "./dom.js";

const pad2 = (n) => String(n).padStart(2, "0");

function niceMax(v) {
  if (v <= 4) return 4;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

function timeLabel(t, span) {
  const d = new Date(t * 1000);
  if (span > 2 * 86400) return `${d.getMonth() + 1}/${d.getDate()} ${pad2(d.getHours())}h`;
  return `${pad2(d.getHours())}:${pad2(d.getMinutes())}`;
}

function tickStep(span) {
  const steps = [60, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400, 172800, 604800];
  for (const st of steps) if (span / st <= 8) return st;
  return 604800;
}

/**
 * series: [{name, cls, points: [[t, value], ...], kind: "step" | "bars", width?}]
 * Returns a <figure> holding the SVG and its legend.
 */
export function timeChart({ t0, t1, series, height = 220, width = 900, label = "", unit = "" }) {
  const m = { l: 44, r: 12, t: 12, b: 24 };
  const W = width - m.l - m.r;
  const H = height - m.t - m.b;
  const span = Math.max(1, t1 - t0);
  // Bar series are stacked (per bucket start time); step series stand alone.
  const stackTop = new Map();
  let vmax = 0;
  for (const sr of series) {
    for (const [t, v] of sr.points) {
      if (sr.kind === "bars") {
        const top = (stackTop.get(t) || 0) + v;
        stackTop.set(t, top);
        vmax = Math.max(vmax, top);
      } else {
        vmax = Math.max(vmax, v);
      }
    }
  }
  const base = new Map();
  vmax = niceMax(vmax);
  const x = (t) => m.l + ((t - t0) / span) * W;
  const y = (v) => m.t + H - (v / vmax) * H;

  const svg = s("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, width, height, role: "img", "aria-label": label });
  // Grid and axes.
  const grid = s("g", { class: "grid-lines" });
  for (let i = 0; i <= 4; i++) {
    const v = (vmax / 4) * i;
    grid.append(s("line", { x1: m.l, x2: m.l + W, y1: y(v), y2: y(v) }),
      s("text", { x: m.l - 6, y: y(v) + 4, class: "axis-label", "text-anchor": "end" }, String(Math.round(v * 100) / 100)));
  }
  const step = tickStep(span);
  const offset = new Date().getTimezoneOffset() * 60;
  for (let t = Math.ceil((t0 - offset) / step) * step + offset; t <= t1; t += step) {
    grid.append(s("line", { x1: x(t), x2: x(t), y1: m.t, y2: m.t + H, class: "vgrid" }),
      s("text", { x: x(t), y: height - 6, class: "axis-label", "text-anchor": "middle" }, timeLabel(t, span)));
  }
  svg.append(grid);

  for (const sr of series) {
    const g = s("g", { class: `series ${sr.cls}` });
    if (sr.kind === "bars") {
      const bw = Math.max(1, (sr.width / span) * W - 1);
      for (const [t, v] of sr.points) {
        if (!v) continue;
        const b = base.get(t) || 0;
        base.set(t, b + v);
        g.append(s("rect", { x: x(t), y: y(b + v), width: bw, height: Math.max(0.5, y(b) - y(b + v)) }));
      }
    } else if (sr.points.length) {
      let d = `M${x(sr.points[0][0]).toFixed(1)},${y(sr.points[0][1]).toFixed(1)}`;
      for (let i = 1; i < sr.points.length; i++) {
        const [t, v] = sr.points[i];
        d += `H${x(t).toFixed(1)}V${y(v).toFixed(1)}`;
      }
      d += `H${x(t1).toFixed(1)}`;
      const area = `${d}V${(m.t + H).toFixed(1)}H${x(sr.points[0][0]).toFixed(1)}Z`;
      g.append(s("path", { d: area, class: "area" }), s("path", { d, class: "line" }));
    }
    svg.append(g);
  }
  svg.append(s("line", { x1: m.l, x2: m.l + W, y1: m.t + H, y2: m.t + H, class: "axis" }));

  // Hover read-out.
  const cursor = s("line", { class: "hover-line", y1: m.t, y2: m.t + H, x1: -10, x2: -10, visibility: "hidden" });
  svg.append(cursor);
  const readout = h("div", { class: "chart-readout", hidden: true });
  svg.addEventListener("mousemove", (e) => {
    const box = svg.getBoundingClientRect();
    const px = ((e.clientX - box.left) / box.width) * width;
    const t = t0 + ((px - m.l) / W) * span;
    if (t < t0 || t > t1) {
      readout.hidden = true;
      cursor.setAttribute("visibility", "hidden");
      return;
    }
    cursor.setAttribute("x1", px);
    cursor.setAttribute("x2", px);
    cursor.setAttribute("visibility", "visible");
    const d = new Date(t * 1000);
    const parts = [`${pad2(d.getHours())}:${pad2(d.getMinutes())}:${pad2(d.getSeconds())}`];
    for (const sr of series) {
      let v = 0;
      if (sr.kind === "bars") {
        for (const [bt, bv] of sr.points) if (t >= bt && t < bt + sr.width) v = bv;
      } else {
        for (const [pt, pv] of sr.points) {
          if (pt > t) break;
          v = pv;
        }
      }
      parts.push(`${sr.name}: ${Math.round(v * 100) / 100}${unit}`);
    }
    readout.textContent = parts.join("   ");
    readout.hidden = false;
  });
  svg.addEventListener("mouseleave", () => {
    readout.hidden = true;
    cursor.setAttribute("visibility", "hidden");
  });

  const legend = h("div", { class: "legend" }, series.map((sr) => h("span", { class: `key ${sr.cls}` }, h("span", { class: "swatch" }), sr.name)));
  return h("figure", { class: "chart-box" }, label ? h("figcaption", { text: label }) : null, legend, svg, readout);
}
