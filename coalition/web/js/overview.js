// Overview: the farm at a glance. Counts by state, running jobs and busy workers over the last
// hours (an SVG chart of our own), and throughput.
//
// History comes from three places, best first: a `history` list in /api/stats when the server
// keeps one; the run events of the window (each run has a start and a duration, so the number
// of jobs running at any instant can be rebuilt exactly); and samples this page takes itself
// (kept in localStorage, so they survive a reload).

import * as API from "./api.js";
import { h, clear, fill } from "./dom.js";
import { fmtCount, fmtDuration, serverNow } from "./format.js";
import * as prefs from "./prefs.js";
import { notify } from "./ui.js";
import { timeChart } from "./chart.js";
import { JOB_STATES } from "./jobs.js";
import { WORKER_STATES } from "./workers.js";

const WINDOWS = [[3600, "1 hour"], [6 * 3600, "6 hours"], [24 * 3600, "24 hours"]];
const SAMPLE_KEY = "overview.samples";
const SAMPLE_EVERY = 20; // seconds
const MAX_EVENTS = 200000;

/** Normalise /api/stats into {jobs, workers, finishedLastHour, history}; tolerant of shapes. */
export function readStats(st) {
  st = st && typeof st === "object" ? st : {};
  const obj = (x) => (x && typeof x === "object" && !Array.isArray(x) ? x : {});
  const hist = obj(st.history);
  const history = Array.isArray(hist.running) && hist.step > 0 ? hist : null;
  return {
    jobs: { ...obj(st.jobs) },
    workers: { ...obj(st.workers) },
    finishedLastHour: typeof st.finished_last_hour === "number" ? st.finished_last_hour : null,
    history,
  };
}

function sumStates(obj, states) {
  return states.reduce((n, k) => n + (Number(obj[k]) || 0), 0);
}

/** Take one sample of the farm (called on a timer by the app, whatever the view). */
export async function takeSample(hours = 6) {
  const st = readStats(await API.get("/api/stats", { hours }));
  const t = serverNow();
  const running = Number(st.jobs.WORKING) || 0;
  const busy = Number(st.workers.WORKING) || 0;
  const online = sumStates(st.workers, ["WAITING", "WORKING", "STARTING"]);
  const samples = prefs.load(SAMPLE_KEY, []).filter((x) => x.t > t - 24 * 3600 - 60);
  samples.push({ t, running, busy, online });
  prefs.save(SAMPLE_KEY, samples.slice(-5000));
  return st;
}

export class OverviewView {
  constructor(app) {
    this.app = app;
    this.prefs = prefs.load("overview", { window: 6 * 3600 });
    this.seq = 0;
  }

  mount(root) {
    this.root = root;
    this.windowSel = h("select", { "aria-label": "Time window" },
      WINDOWS.map(([sec, label]) => h("option", { value: String(sec), text: `last ${label}`, selected: sec === this.prefs.window })));
    this.windowSel.addEventListener("change", () => {
      this.prefs.window = Number(this.windowSel.value);
      prefs.save("overview", this.prefs);
      this.load();
    });
    this.tiles = h("div", { class: "tiles" });
    this.charts = h("div", { class: "charts" });
    this.note = h("p", { class: "muted chart-note" });
    fill(root, h("section", { class: "view overview-view" },
      h("div", { class: "viewbar" }, h("h1", { text: "Overview" }), h("span", { class: "spacer" }), this.windowSel),
      h("div", { class: "overview-body" }, this.tiles, this.charts, this.note)));
    this.resize = new ResizeObserver(() => {
      const w = this.charts.clientWidth;
      if (this.last && Math.abs(w - (this.lastWidth || 0)) > 20) {
        this.lastWidth = w;
        this.render(...this.last);
      }
    });
    this.resize.observe(this.charts);
    this.load();
  }

  unmount() {
    this.seq++;
    this.resize?.disconnect();
  }

  refresh() {
    return this.load();
  }

  async load() {
    const seq = ++this.seq;
    const span = this.prefs.window;
    let stats;
    let events = null;
    try {
      stats = await takeSample(span / 3600);
    } catch (err) {
      if (seq === this.seq) notify.error(err);
      stats = readStats(null);
    }
    if (seq !== this.seq) return;
    try {
      // With the server's history only the last hour's runs are needed (average run time).
      const window = stats.history ? 3600 : span;
      const list = await API.get("/api/events", { howlong: window, limit: stats.history ? 5000 : MAX_EVENTS });
      events = Array.isArray(list) ? list.slice(0, MAX_EVENTS) : [];
    } catch (err) {
      if (seq === this.seq) notify.error(err);
    }
    if (seq !== this.seq) return;
    this.last = [stats, events, span];
    this.lastWidth = this.charts.clientWidth;
    this.render(stats, events, span);
    this.app.markUpdated();
  }

  render(stats, events, span) {
    const t1 = serverNow();
    const t0 = t1 - span;
    // ---- tiles
    const jobTotal = sumStates(stats.jobs, JOB_STATES);
    const workerTotal = sumStates(stats.workers, WORKER_STATES);
    const tile = (label, value, cls, href, title) => h(href ? "a" : "div", { class: `tile ${cls}`, href, title },
      h("span", { class: "tile-value", text: fmtCount(value) }), h("span", { class: "tile-label", text: label }));
    const fin = (events || []).filter((e) => e.state === "FINISHED" && e.start + (e.duration || 0) >= t1 - 3600);
    const errs = (events || []).filter((e) => e.state === "ERROR" && e.start + (e.duration || 0) >= t1 - 3600);
    const finHour = stats.finishedLastHour ?? (events ? fin.length : null);
    const errHour = events ? errs.length : null;
    const avgDur = fin.length ? fin.reduce((n, e) => n + (Number(e.duration) || 0), 0) / fin.length : null;
    fill(this.tiles, 
      h("div", { class: "tile-group" }, h("h2", { text: `Jobs · ${fmtCount(jobTotal)}` }),
        h("div", { class: "tile-row" }, JOB_STATES.map((st) => tile(st.toLowerCase(), stats.jobs[st] || 0, `st-tile st-${st}`,
          `#/jobs?state=${st}`, `Show the ${st} jobs at the top level`)))),
      h("div", { class: "tile-group" }, h("h2", { text: `Workers · ${fmtCount(workerTotal)}` }),
        h("div", { class: "tile-row" }, WORKER_STATES.map((st) => tile(st.toLowerCase(), stats.workers[st] || 0, `st-tile st-${st}`, "#/workers")))),
      h("div", { class: "tile-group" }, h("h2", { text: "Throughput · last hour" }),
        h("div", { class: "tile-row" },
          tile("finished", finHour ?? 0, "st-tile st-FINISHED", "#/activities"),
          tile("errors", errHour ?? 0, "st-tile st-ERROR", "#/activities"),
          h("div", { class: "tile st-tile" }, h("span", { class: "tile-value", text: avgDur ? fmtDuration(avgDur) : "—" }),
            h("span", { class: "tile-label", text: "average run" })),
          h("div", { class: "tile st-tile" }, h("span", { class: "tile-value", text: finHour ? rate(finHour / 60) : "0" }),
            h("span", { class: "tile-label", text: "jobs / minute" })))));

    // ---- activity chart
    const samples = prefs.load(SAMPLE_KEY, []).filter((x) => x.t >= t0);
    const hist = stats.history;
    let running;
    let finished;
    let failed;
    let bucket;
    if (hist) {
      bucket = hist.step;
      const at = (i) => hist.start + i * hist.step;
      running = hist.running.map((v, i) => [at(i), Number(v) || 0]);
      finished = (hist.finished || []).map((v, i) => [at(i), Number(v) || 0]);
      failed = (hist.errors || []).map((v, i) => [at(i), Number(v) || 0]);
    } else {
      bucket = span <= 3600 ? 60 : span <= 6 * 3600 ? 300 : 900;
      running = events ? runningFromEvents(events, t0, t1) : samples.map((x) => [x.t, x.running]);
      finished = bucketize(events || [], "FINISHED", t0, t1, bucket);
      failed = bucketize(events || [], "ERROR", t0, t1, bucket);
    }
    const busy = samples.map((x) => [x.t, x.busy]);
    const online = samples.map((x) => [x.t, x.online]);
    const series = [
      { name: "online workers", cls: "s-online", points: online, kind: "step" },
      { name: "busy workers", cls: "s-busy", points: busy, kind: "step" },
      { name: "running jobs", cls: "s-running", points: running, kind: "step" },
    ].filter((sr) => sr.points.length);

    const per = bucket >= 3600 ? `${+(bucket / 3600).toFixed(1)} h` : bucket >= 60 ? `${Math.round(bucket / 60)} min` : `${Math.round(bucket)} s`;
    const width = Math.max(480, (this.charts.clientWidth || 900) - 26);
    fill(this.charts, 
      timeChart({ t0, t1, series, width, label: "Running jobs and workers" }),
      timeChart({
        t0, t1, height: 160, width,
        label: `Throughput: runs ended per ${per}`,
        series: [
          { name: "finished", cls: "s-finished", points: finished, kind: "bars", width: bucket },
          { name: "errors", cls: "s-errors", points: failed, kind: "bars", width: bucket },
        ],
      }));
    this.note.textContent = `${hist ? "Running jobs: runs in progress during each interval (server history)." :
      "Running jobs are rebuilt from the run events."} Worker lines come from samples this page takes every ` +
      `${SAMPLE_EVERY} s while it is open${samples.length < 3 ? " (just started)" : ""}.`;
  }
}

export const SAMPLE_PERIOD = SAMPLE_EVERY;

function rate(perMinute) {
  if (perMinute >= 100) return fmtCount(Math.round(perMinute));
  return String(Number(perMinute.toPrecision(2)));
}

/** Number of runs in progress over time, as step points, from events {start, duration, state}. */
export function runningFromEvents(events, t0, t1) {
  const deltas = [];
  let base = 0;
  for (const e of events) {
    const start = Number(e.start) || 0;
    const open = e.state === "WORKING";
    const end = open ? t1 : start + (Number(e.duration) || 0);
    if (end < t0 || start > t1) continue;
    if (start <= t0) base++;
    else deltas.push([start, 1]);
    if (end < t1) deltas.push([end, -1]);
  }
  deltas.sort((a, b) => a[0] - b[0]);
  const points = [[t0, base]];
  let v = base;
  for (const [t, d] of deltas) {
    v += d;
    if (t < t0) continue;
    if (points.length && points[points.length - 1][0] === t) points[points.length - 1][1] = v;
    else points.push([t, v]);
  }
  return points;
}

function bucketize(events, state, t0, t1, width) {
  const n = Math.ceil((t1 - t0) / width);
  const start = t1 - n * width;
  const counts = new Array(n).fill(0);
  for (const e of events) {
    if (e.state !== state) continue;
    const end = (Number(e.start) || 0) + (Number(e.duration) || 0);
    const i = Math.floor((end - start) / width);
    if (i >= 0 && i < n) counts[i]++;
  }
  return counts.map((c, i) => [start + i * width, c]);
}
