// The "Frames" tab of the job panel: a group's frames (its children) with each frame's time
// and peak memory as an inline SVG chart, their min/mean/max, and the time left
// (GET /api/jobs/ID/stats). A job alone is its own frame.

import * as API from "./api.js";
import { h, s, fill } from "./dom.js";
import { fmtCount } from "./format.js";

export function durationText(seconds) {
  if (seconds === null || seconds === undefined) return "unknown";
  const sec = Math.max(0, Math.round(seconds));
  if (sec < 120) return `${sec} s`;
  const min = Math.round(sec / 60);
  return min < 120 ? `${min} min` : `${Math.floor(min / 60)} h ${min % 60} min`;
}

function niceMax(v) {
  if (v <= 1) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Bars: each frame's time (left axis, s); dots: its peak memory (right axis, MB). */
export function framesChart(frames, { width = 520, height = 180 } = {}) {
  const m = { l: 40, r: 44, t: 10, b: 20 };
  const W = width - m.l - m.r;
  const H = height - m.t - m.b;
  const tmax = niceMax(Math.max(0, ...frames.map((f) => f.time || 0)));
  const mmax = niceMax(Math.max(0, ...frames.map((f) => f.peak_memory || 0)));
  const n = Math.max(1, frames.length);
  const bw = W / n;
  const svg = s("svg", { class: "chart frames-chart", viewBox: `0 0 ${width} ${height}`, width, height, role: "img",
    "aria-label": "Frame time and peak memory per frame" });
  const grid = s("g", { class: "grid-lines" });
  for (let i = 0; i <= 4; i++) {
    const y = m.t + H - (H * i) / 4;
    grid.append(s("line", { x1: m.l, x2: m.l + W, y1: y, y2: y }),
      s("text", { x: m.l - 6, y: y + 4, class: "axis-label", "text-anchor": "end" }, `${Math.round((tmax * i) / 4 * 10) / 10}s`),
      s("text", { x: m.l + W + 6, y: y + 4, class: "axis-label" }, `${Math.round((mmax * i) / 4)}M`));
  }
  svg.append(grid);
  const bars = s("g", { class: "series frame-time" });
  const dots = s("g", { class: "series frame-memory" });
  frames.forEach((f, i) => {
    const x = m.l + i * bw;
    if (f.time !== undefined) {
      const bh = (f.time / tmax) * H;
      bars.append(s("rect", { x: x + bw * 0.1, y: m.t + H - bh, width: Math.max(1, bw * 0.8), height: Math.max(0.5, bh), dataset: { frame: f.id } },
        s("title", {}, `${f.title}: ${f.time} s, ${f.peak_memory} MB`)));
      dots.append(s("circle", { cx: x + bw / 2, cy: m.t + H - (f.peak_memory / mmax) * H, r: Math.min(4, Math.max(1.5, bw / 4)) }));
    }
  });
  svg.append(bars, dots, s("line", { x1: m.l, x2: m.l + W, y1: m.t + H, y2: m.t + H, class: "axis" }));
  return svg;
}

function spreadRow(label, sp, unit) {
  const v = (x) => (sp.count ? `${Math.round(x * 10) / 10}${unit}` : "–");
  return h("tr", {}, h("th", { text: label }), h("td", { text: v(sp.min) }), h("td", { text: v(sp.mean) }), h("td", { text: v(sp.max) }));
}

/** The tab's content for one job id (a <section>), or a hint when the selection is not one job. */
export async function framesSection(ids) {
  if (ids.length !== 1) {
    return h("p", { class: "muted", text: "Select one job or group to see its frames." });
  }
  const stats = await API.get(`/api/jobs/${ids[0]}/stats`);
  const done = stats.time.count;
  return h("section", { class: "frames-stats", dataset: { job: stats.id } },
    h("p", { class: "frames-summary" },
      h("strong", { text: `${fmtCount(stats.frame_count)} frames` }), " ",
      h("span", { class: "muted", text: `${fmtCount(done)} finished, ${stats.running} running, ${stats.waiting} waiting` })),
    h("p", { class: "time-left" }, "Time left: ", h("strong", { text: durationText(stats.time_left) })),
    stats.thumbnail
      ? h("figure", { class: "thumbnail" },
        h("img", { src: `/api/jobs/${stats.id}/thumbnail?v=${stats.thumbnail.updated_at}`, alt: "The newest frame" }),
        h("figcaption", { class: "muted", text: `newest frame, from job ${stats.thumbnail.source}` }))
      : null,
    h("table", { class: "spread" },
      h("thead", {}, h("tr", {}, h("th"), h("th", { text: "min" }), h("th", { text: "mean" }), h("th", { text: "max" }))),
      h("tbody", {}, spreadRow("Frame time", stats.time, " s"), spreadRow("CPU time", stats.cpu_time, " s"),
        spreadRow("Peak memory", stats.peak_memory, " MB"))),
    done ? framesChart(stats.frames) : h("p", { class: "muted", text: "No frame has finished yet." }),
    h("div", { class: "legend" }, h("span", { class: "key frame-time" }, h("span", { class: "swatch" }), "frame time"),
      h("span", { class: "key frame-memory" }, h("span", { class: "swatch" }), "peak memory")));
}

export function fillFrames(el, ids) {
  return framesSection(ids).then((section) => fill(el, section));
}
