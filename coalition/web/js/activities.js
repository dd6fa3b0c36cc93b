// Activities: the run events (one row per run), filtered by job, worker and age.

import * as API from "./api.js";
import { h, clear, fill, debounce } from "./dom.js";
import { fmtFullTime, fmtDuration, fmtCount } from "./format.js";
import * as prefs from "./prefs.js";
import { notify, headerRow, stateBadge } from "./ui.js";

export const HOW_LONG = [
  [60, "last minute"], [300, "last 5 minutes"], [900, "last 15 minutes"], [3600, "last hour"],
  [6 * 3600, "last 6 hours"], [86400, "last day"], [7 * 86400, "last week"], [30 * 86400, "last month"],
  [182 * 86400, "last 6 months"], [0, "all time"],
];
const MAX_ROWS = 2000;

const COLUMNS = [
  { key: "start", label: "Start", sort: "start", cls: "time", render: (e) => fmtFullTime(e.start) },
  { key: "job_id", label: "Job", sort: "job_id", cls: "num", render: (e) => h("a", { href: `#/log/${e.job_id}`, title: "Open the log", text: String(e.job_id) }) },
  { key: "job_title", label: "Title", sort: "job_title", cls: "title", render: (e) => e.job_title || "" },
  { key: "state", label: "State", sort: "state", cls: "narrow", render: (e) => stateBadge(e.state) },
  { key: "worker", label: "Worker", sort: "worker", render: (e) => e.worker || "" },
  { key: "duration", label: "Duration", sort: "duration", cls: "num", render: (e) => fmtDuration(e.duration) },
  // Why the run ended (exit code, signal, timeout, stall, log rule, lost worker, handback).
  { key: "reason", label: "Reason", sort: "reason", cls: "reason", render: (e) => (e.reason ? h("span", { title: e.reason, text: e.reason }) : "") },
];

export class ActivitiesView {
  constructor(app) {
    this.app = app;
    this.prefs = prefs.load("activities", { howlong: 3600, sort: "start", order: "desc" });
    this.events = [];
    this.loadSeq = 0;
  }

  mount(root, params) {
    this.root = root;
    this.job = params.query.get("job") || "";
    this.worker = params.query.get("worker") || "";
    const apply = debounce(() => this.filterChanged(), 300);
    this.jobInput = h("input", { type: "search", inputmode: "numeric", placeholder: "Job id", value: this.job, size: 8, "aria-label": "Job id" });
    this.workerInput = h("input", { type: "search", placeholder: "Worker", value: this.worker, size: 14, "aria-label": "Worker" });
    this.howLong = h("select", { "aria-label": "How long" },
      HOW_LONG.map(([sec, label]) => h("option", { value: String(sec), text: label, selected: sec === this.prefs.howlong })));
    for (const el of [this.jobInput, this.workerInput]) el.addEventListener("input", apply);
    this.howLong.addEventListener("change", () => {
      this.prefs.howlong = Number(this.howLong.value);
      prefs.save("activities", this.prefs);
      this.load();
    });
    this.thead = h("thead");
    this.tbody = h("tbody");
    this.tbody.addEventListener("dblclick", (e) => {
      const tr = e.target.closest("tr[data-job]");
      if (tr) this.app.navigate(`#/log/${tr.dataset.job}`);
    });
    this.tbody.addEventListener("click", (e) => {
      const tr = e.target.closest("tr[data-job]");
      if (!tr) return;
      for (const x of this.tbody.querySelectorAll("tr.selected")) x.classList.remove("selected");
      tr.classList.add("selected");
    });
    this.emptyNote = h("div", { class: "empty", hidden: true });
    this.footInfo = h("div", { class: "foot-info" });
    fill(root, h("section", { class: "view activities-view" },
      h("div", { class: "viewbar" }, h("h1", { text: "Activities" })),
      h("div", { class: "filters" },
        this.jobInput, this.workerInput, this.howLong,
        h("button", { class: "btn link", text: "Clear", onclick: () => {
          this.jobInput.value = "";
          this.workerInput.value = "";
          this.filterChanged();
        } })),
      h("div", { class: "jobs-body" }, h("div", { class: "jobs-main" },
        h("div", { class: "table-wrap", tabindex: "0" }, h("table", { class: "grid events", "aria-label": "Activities" }, this.thead, this.tbody)),
        this.emptyNote)),
      h("div", { class: "footer" }, this.footInfo)));
    this.renderHead();
    this.load();
  }

  unmount() {
    this.loadSeq++;
  }

  filterChanged() {
    const q = new URLSearchParams();
    if (this.jobInput.value.trim()) q.set("job", this.jobInput.value.trim());
    if (this.workerInput.value.trim()) q.set("worker", this.workerInput.value.trim());
    const hash = `#/activities${q.toString() ? `?${q}` : ""}`;
    history.replaceState(null, "", hash);
    this.job = this.jobInput.value.trim();
    this.worker = this.workerInput.value.trim();
    this.load();
  }

  async load() {
    const seq = ++this.loadSeq;
    if (this.job && !/^\d+$/.test(this.job)) {
      notify.error("The job filter takes a job id (a number).");
      return;
    }
    const params = { job: this.job, worker: this.worker };
    // Coalition 4 read howlong=-1 as "nothing"; "all time" asks for a very long window instead.
    params.howlong = this.prefs.howlong || 100 * 365 * 86400;
    try {
      const list = await API.get("/api/events", params);
      if (seq !== this.loadSeq) return;
      this.events = Array.isArray(list) ? list : list ? [list] : [];
      this.render();
      this.app.markUpdated();
    } catch (err) {
      if (seq === this.loadSeq) notify.error(err);
    }
  }

  refresh() {
    return this.load();
  }

  renderHead() {
    fill(this.thead, headerRow(COLUMNS, this.prefs.sort, this.prefs.order, (key) => {
      if (this.prefs.sort === key) this.prefs.order = this.prefs.order === "asc" ? "desc" : "asc";
      else {
        this.prefs.sort = key;
        this.prefs.order = ["job_title", "worker", "state"].includes(key) ? "asc" : "desc";
      }
      prefs.save("activities", this.prefs);
      this.renderHead();
      this.render();
    }));
  }

  render() {
    const { sort, order } = this.prefs;
    const dir = order === "asc" ? 1 : -1;
    const list = [...this.events].sort((a, b) => {
      const x = a[sort] ?? "";
      const y = b[sort] ?? "";
      if (x < y) return -dir;
      if (x > y) return dir;
      return (b.id || 0) - (a.id || 0);
    });
    const frag = document.createDocumentFragment();
    for (const ev of list.slice(0, MAX_ROWS)) {
      const tr = h("tr", { dataset: { job: String(ev.job_id) } });
      for (const col of COLUMNS) {
        const content = col.render(ev);
        const td = h("td", { class: col.cls || "", dataset: { col: col.key } });
        if (content instanceof Node) td.append(content);
        else td.textContent = content;
        tr.append(td);
      }
      frag.append(tr);
    }
    fill(this.tbody, frag);
    this.emptyNote.hidden = list.length > 0;
    this.emptyNote.textContent = "No activity in this window.";
    const fin = list.filter((e) => e.state === "FINISHED");
    const err = list.filter((e) => e.state === "ERROR").length;
    const avg = fin.length ? fin.reduce((n, e) => n + (Number(e.duration) || 0), 0) / fin.length : 0;
    fill(this.footInfo, 
      h("span", { text: `${fmtCount(list.length)} runs` }),
      h("span", { class: "c-fin", text: `${fmtCount(fin.length)} finished` }),
      h("span", { class: "c-err", text: `${fmtCount(err)} errors` }),
      fin.length ? h("span", { text: `avg ${fmtDuration(avg)}` }) : null,
      list.length > MAX_ROWS ? h("span", { class: "muted", text: `showing the first ${fmtCount(MAX_ROWS)}: narrow the filters` }) : null);
  }

  onKey(e) {
    if (e.key === "/") {
      this.jobInput.focus();
      return true;
    }
    return false;
  }
}
