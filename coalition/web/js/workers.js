// The Workers view: every worker slot with its load, memory and counters; start, stop,
// delete, terminate (cloud mode) and edit the ordered affinity rule lines.

import * as API from "./api.js";
import { h, clear, fill, debounce } from "./dom.js";
import { fmtAgo, fmtMB, fmtCount, fmtFullTime, cpuList } from "./format.js";
import * as prefs from "./prefs.js";
import { notify, guarded, confirmDialog, Selection, headerRow, stateBadge } from "./ui.js";

export const WORKER_STATES = ["WAITING", "WORKING", "TIMEOUT", "STARTING", "TERMINATED", "SICK"];

function cpuCell(w) {
  const loads = cpuList(w.cpu);
  if (!loads.length) return h("span", { class: "muted", text: "—" });
  const avg = loads.reduce((a, b) => a + b, 0) / loads.length;
  const bars = h("span", { class: "cores", title: `${loads.length} cores: ${loads.map((x) => `${Math.round(x)}%`).join(" ")}` });
  for (const load of loads) {
    const p = Math.max(0, Math.min(100, load));
    const level = h("span", { class: `core-fill${p > 85 ? " hot" : ""}` });
    level.style.height = `${p}%`;
    bars.append(h("span", { class: "core" }, level));
  }
  return h("span", { class: "cpu" }, bars, h("span", { class: "cpu-avg", text: `${Math.round(avg)}%` }));
}

function memCell(w) {
  const total = Number(w.total_memory) || 0;
  const free = Number(w.free_memory) || 0;
  if (!total) return h("span", { class: "muted", text: "—" });
  const used = Math.max(0, total - free);
  const p = used / total;
  const usedBar = h("span", { class: "bar-fill" });
  usedBar.style.width = `${(p * 100).toFixed(1)}%`;
  return h("span", { class: `bar mem${p > 0.9 ? " hot" : ""}`, title: `${fmtMB(used)} used of ${fmtMB(total)} (${fmtMB(free)} free)` },
    usedBar, h("span", { class: "bar-text", text: `${fmtMB(used)} / ${fmtMB(total)}` }));
}

// What the host (a fixed slot: its share) offers to jobs and what its runs hold.
function resourcesCell(w) {
  const cores = Number(w.cores) || 0;
  if (!cores) return h("span", { class: "muted", title: "This worker does not report its resources", text: "—" });
  const memory = Number(w.memory) || 0;
  const gpus = Number(w.gpus) || 0;
  const parts = [`${w.used_cores || 0}/${cores} cores`];
  if (memory) parts.push(`${fmtMB(Number(w.used_memory) || 0)}/${fmtMB(memory)}`);
  if (gpus) parts.push(`${w.used_gpus || 0}/${gpus} GPU${gpus > 1 ? "s" : ""}`);
  const busy = (Number(w.used_cores) || 0) / cores;
  return h("span", { class: `resources${busy >= 1 ? " full" : ""}`, title: `In use by its jobs / offered to jobs${w.host && w.host !== w.name ? ` (host ${w.host})` : ""}`, text: parts.join(" · ") });
}

function rulesCell(w) {
  const lines = String(w.affinity || "").split("\n").map((l) => l.trim()).filter(Boolean);
  if (!lines.length) return h("span", { class: "muted", text: "any" });
  return h("span", { class: "rules" }, lines.map((line, i) =>
    h("span", { class: "rule", title: `rule ${i + 1}: ${line}` }, h("span", { class: "rule-n", text: String(i + 1) }), line)));
}

const COLUMNS = [
  { key: "name", label: "Name", sort: "name", cls: "name", render: (w) => w.name },
  { key: "active", label: "Active", sort: "active", cls: "narrow", render: (w) =>
    h("span", { class: w.active ? "on-dot" : "off-dot", title: w.active ? "takes jobs" : "stopped: takes no job", text: w.active ? "on" : "stopped" }) },
  { key: "state", label: "State", sort: "state", cls: "narrow", render: (w) => stateBadge(w.state) },
  // Why a SICK worker takes no jobs (docs/failures.md).
  { key: "reason", label: "Why", sort: "reason", cls: "reason", render: (w) => (w.reason ? h("span", { title: w.reason, text: w.reason }) : "") },
  { key: "affinity", label: "Affinity rules", sort: "affinity", render: rulesCell },
  { key: "ping_time", label: "Last ping", sort: "ping_time", cls: "time", render: (w) => {
    const el = h("span", { text: fmtAgo(w.ping_time), title: fmtFullTime(w.ping_time) });
    return el;
  } },
  { key: "cpu", label: "CPU", sort: "cpu", cls: "cpu-col", render: cpuCell },
  { key: "memory", label: "Memory", sort: "memory", cls: "mem-col", render: memCell },
  { key: "resources", label: "Resources", title: "Cores, memory and GPUs its jobs hold / it offers", sort: "resources", cls: "res-col", render: resourcesCell },
  { key: "last_job", label: "Last job", sort: "last_job", cls: "num", render: (w) =>
    (w.last_job ? h("a", { href: `#/log/${w.last_job}`, title: "Open its log", text: String(w.last_job) }) : "") },
  { key: "finished", label: "Done", title: "Finished jobs", sort: "finished", cls: "num c-fin", render: (w) => fmtCount(w.finished) },
  { key: "error", label: "Err", title: "Jobs in error", sort: "error", cls: "num c-err", render: (w) => fmtCount(w.error) },
  { key: "ip", label: "IP", sort: "ip", cls: "mono", render: (w) => w.ip || "" },
];

function sortValue(w, key) {
  if (key === "cpu") {
    const l = cpuList(w.cpu);
    return l.length ? l.reduce((a, b) => a + b, 0) / l.length : -1;
  }
  if (key === "memory") return (Number(w.total_memory) || 0) - (Number(w.free_memory) || 0);
  if (key === "resources") return (Number(w.used_cores) || 0) / Math.max(1, Number(w.cores) || 0);
  const v = w[key];
  return typeof v === "string" ? v.toLowerCase() : Number(v) || 0;
}

export class WorkersView {
  constructor(app) {
    this.app = app;
    this.prefs = prefs.load("workers", { sort: "name", order: "asc", filter: "", states: [] });
    this.workers = [];
    this.shown = [];
    this.byName = new Map();
    this.selection = new Selection(() => this.selectionChanged());
    this.loadSeq = 0;
  }

  mount(root) {
    this.root = root;
    const btn = (label, title, fn, cls = "btn") => h("button", { class: cls, title, text: label, onclick: fn,
      dataset: label === "Activity" ? undefined : { needs: "workers" } });
    this.filterInput = h("input", { type: "search", placeholder: "Filter name, IP, affinity  ( / )", value: this.prefs.filter, size: 28, "aria-label": "Filter workers" });
    this.filterInput.addEventListener("input", debounce(() => {
      this.prefs.filter = this.filterInput.value.trim();
      this.save();
      this.render();
    }, 120));
    this.stateChips = WORKER_STATES.map((st) => h("button", {
      class: `chip st-${st}${this.prefs.states.includes(st) ? " on" : ""}`, text: st, dataset: { state: st },
      "aria-pressed": String(this.prefs.states.includes(st)),
      onclick: () => {
        const set = new Set(this.prefs.states);
        if (set.has(st)) set.delete(st);
        else set.add(st);
        this.prefs.states = WORKER_STATES.filter((x) => set.has(x));
        this.save();
        this.render();
      },
    }));
    this.thead = h("thead");
    this.tbody = h("tbody");
    this.tbody.addEventListener("mousedown", (e) => {
      if (e.shiftKey || e.ctrlKey || e.metaKey) e.preventDefault();
    });
    this.tbody.addEventListener("click", (e) => {
      if (e.target.closest("a")) return;
      const tr = e.target.closest("tr[data-name]");
      if (!tr) return;
      const toggle = e.ctrlKey || e.metaKey || Boolean(e.target.closest("td.check"));
      this.selection.click(tr.dataset.name, this.order(), { ctrl: toggle, shift: e.shiftKey });
    });
    this.tbody.addEventListener("dblclick", (e) => {
      const tr = e.target.closest("tr[data-name]");
      if (tr && !e.target.closest("a")) this.app.navigate(`#/activities?worker=${encodeURIComponent(tr.dataset.name)}`);
    });
    this.table = h("table", { class: "grid workers", "aria-label": "Workers", "aria-multiselectable": "true" }, this.thead, this.tbody);
    this.tableWrap = h("div", { class: "table-wrap", tabindex: "0" }, this.table);
    this.emptyNote = h("div", { class: "empty", hidden: true });
    this.footInfo = h("div", { class: "foot-info" });

    // Affinity editor.
    this.affText = h("textarea", { class: "mono", rows: 5, spellcheck: "false", placeholder: "one rule per line, e.g.\nlinux,gpu\nlinux", "aria-label": "Affinity rules" });
    this.affText.addEventListener("input", () => this.markAffinity());
    this.affUpdate = h("button", { class: "btn primary", type: "submit", text: "Update", disabled: true });
    this.affLabel = h("label", { class: "field" }, h("span", { class: "field-label", text: "Affinity rules" }), this.affText,
      h("span", { class: "field-hint", text: "One rule per line, each a comma-separated tag set, preferred first. A job runs on a worker when all its tags are in one rule; jobs without tags come after every rule." }));
    this.affSummary = h("div", { class: "panel-summary" });
    const affForm = h("form", { class: "panel-form" }, this.affSummary, this.affLabel, h("div", { class: "panel-actions" }, this.affUpdate));
    affForm.addEventListener("submit", (e) => {
      e.preventDefault();
      this.saveAffinity();
    });
    affForm.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        this.saveAffinity();
      }
    });
    this.panel = h("aside", { class: "panel", dataset: { needs: "workers" } }, h("div", { class: "panel-head" }, h("span", { class: "panel-title", text: "Edit affinity" })), h("div", { class: "panel-body" }, affForm));

    fill(root, h("section", { class: "view workers-view" },
      h("div", { class: "viewbar" }, h("h1", { text: "Workers" }), h("div", { class: "worker-summary" })),
      h("div", { class: "toolbar", role: "toolbar" },
        h("div", { class: "btn-group" },
          btn("Start", "Let the selected workers take jobs", () => this.action("start")),
          btn("Stop", "Stop the selected workers: their running job goes back to the queue", () => this.action("stop")),
          btn("Clear sick", "SICK workers take jobs again (their check command would do it too)", () => this.action("clearsick"))),
        h("div", { class: "btn-group" }, btn("Activity", "Runs of the selected worker", () => this.activity())),
        h("div", { class: "btn-group" },
          this.terminateBtn = btn("Terminate", "Cloud mode: shut the selected instances down", () => this.action("terminate"), "btn danger-outline"),
          btn("Delete", "Forget the selected workers", () => this.remove(), "btn danger")),
        h("div", { class: "spacer" })),
      this.backoffNote = h("div", { class: "backoff-note", role: "status", hidden: true }),
      h("div", { class: "filters" }, h("div", { class: "chips" }, this.stateChips), this.filterInput),
      h("div", { class: "jobs-body" }, h("div", { class: "jobs-main" }, this.tableWrap, this.emptyNote), this.panel),
      h("div", { class: "footer" }, this.footInfo)));
    this.renderHead();
    this.load();
    this.checkCloudMode();
  }

  /** Hide Terminate when the server says it is not in cloud mode (kept when it does not say). */
  async checkCloudMode() {
    try {
      const ping = await API.get("/api/ping");
      if (ping && typeof ping.servermode === "string") {
        this.terminateBtn.hidden = !["aws", "gcloud", "gce", "qarnot_api"].includes(ping.servermode);
        this.cloud = ["aws", "gcloud"].includes(ping.servermode);
        if (this.cloud) this.loadBackoff();
      }
    } catch {
      // The button stays; the server answers a terminate outside cloud mode with a clear error.
    }
  }

  /** Cloud mode: failed worker boots in a row hold launching back; say so, offer the clear. */
  async loadBackoff() {
    const answer = await guarded(() => API.get("/api/cloud/backoff"));
    const failures = answer && Array.isArray(answer.failures) ? answer.failures : [];
    const note = this.backoffNote;
    if (!failures.length) {
      note.hidden = true;
      return;
    }
    const last = failures[failures.length - 1];
    fill(note,
      h("span", { text: `Launching held back: ${failures.length} failed worker boot${failures.length > 1 ? "s" : ""} in a row. Last: ${last.instance}: ${last.reason}` }),
      h("button", { class: "btn", type: "button", text: "Clear back-off", title: "Forget the failed boots: the autoscaler launches again",
        onclick: () => this.clearBackoff() }));
    note.hidden = false;
  }

  async clearBackoff() {
    const answer = await guarded(() => API.post("/api/cloud/clearbackoff", {}));
    if (answer) notify.ok(`Back-off cleared (${answer.cleared} failed boot${answer.cleared === 1 ? "" : "s"} forgotten)`);
    this.loadBackoff();
  }

  unmount() {
    this.loadSeq++;
  }

  save() {
    prefs.save("workers", this.prefs);
    for (const chip of this.stateChips) {
      const on = this.prefs.states.includes(chip.dataset.state);
      chip.classList.toggle("on", on);
      chip.setAttribute("aria-pressed", String(on));
    }
  }

  async load() {
    const seq = ++this.loadSeq;
    try {
      const list = await API.get("/api/workers");
      if (seq !== this.loadSeq) return;
      this.workers = Array.isArray(list) ? list : list && typeof list === "object" ? [list] : [];
      this.byName = new Map(this.workers.map((w) => [w.name, w]));
      for (const name of this.selection.list()) if (!this.byName.has(name)) this.selection.ids.delete(name);
      this.render();
      this.app.markUpdated();
    } catch (err) {
      if (seq === this.loadSeq) notify.error(err);
    }
  }

  refresh() {
    if (this.cloud) this.loadBackoff();
    return this.load();
  }

  visible() {
    const f = this.prefs.filter.toLowerCase();
    const states = this.prefs.states;
    const list = this.workers.filter((w) => (!states.length || states.includes(w.state)) &&
      (!f || [w.name, w.ip, w.affinity, w.state].some((x) => String(x || "").toLowerCase().includes(f))));
    const { sort, order } = this.prefs;
    const dir = order === "asc" ? 1 : -1;
    list.sort((a, b) => {
      const x = sortValue(a, sort);
      const y = sortValue(b, sort);
      if (x < y) return -dir;
      if (x > y) return dir;
      return a.name < b.name ? -1 : 1;
    });
    return list;
  }

  order() {
    return this.shown.map((w) => w.name);
  }

  renderHead() {
    const all = h("input", { type: "checkbox", class: "select-all", title: "Select all", "aria-label": "Select all workers" });
    all.addEventListener("change", () => (all.checked ? this.selection.set(this.order()) : this.selection.clear()));
    this.selectAllBox = all;
    fill(this.thead, headerRow(COLUMNS, this.prefs.sort, this.prefs.order, (key) => {
      if (this.prefs.sort === key) this.prefs.order = this.prefs.order === "asc" ? "desc" : "asc";
      else {
        this.prefs.sort = key;
        this.prefs.order = ["name", "state", "affinity", "ip"].includes(key) ? "asc" : "desc";
      }
      this.save();
      this.renderHead();
      this.render();
    }, h("th", { class: "check" }, all)));
  }

  render() {
    this.shown = this.visible();
    const frag = document.createDocumentFragment();
    for (const w of this.shown) {
      const tr = h("tr", { dataset: { name: w.name }, class: this.rowClass(w), "aria-selected": String(this.selection.has(w.name)) },
        h("td", { class: "check" }, h("span", { class: "box", "aria-hidden": "true" })));
      for (const col of COLUMNS) {
        const td = h("td", { class: col.cls || "", dataset: { col: col.key } });
        const content = col.render(w);
        if (content instanceof Node) td.append(content);
        else td.textContent = content ?? "";
        tr.append(td);
      }
      frag.append(tr);
    }
    fill(this.tbody, frag);
    this.emptyNote.hidden = this.shown.length > 0;
    this.emptyNote.textContent = this.workers.length ? "No worker matches the filter." :
      "No worker has contacted this server yet. Start one with: coalition-worker http://this-server:19211";
    this.renderSummary();
    this.selectionChanged({ quiet: true });
  }

  rowClass(w) {
    return [this.selection.has(w.name) ? "selected" : "", this.selection.cursor === w.name ? "cursor" : "",
      w.active ? "" : "is-stopped", w.state === "TIMEOUT" ? "is-timeout" : ""].join(" ").trim();
  }

  renderSummary() {
    const by = {};
    for (const w of this.workers) by[w.state] = (by[w.state] || 0) + 1;
    const stopped = this.workers.filter((w) => !w.active).length;
    const box = this.root.querySelector(".worker-summary");
    fill(box, 
      h("span", { text: `${fmtCount(this.workers.length)} worker${this.workers.length === 1 ? "" : "s"}` }),
      ...WORKER_STATES.filter((s) => by[s]).map((s) => h("span", { class: `gi st-text-${s}`, text: `${fmtCount(by[s])} ${s.toLowerCase()}` })),
      stopped ? h("span", { class: "gi muted", text: `${stopped} stopped` }) : null);
    const cores = this.workers.reduce((n, w) => n + cpuList(w.cpu).length, 0);
    fill(this.footInfo, 
      h("span", { text: `${fmtCount(this.shown.length)} shown` }),
      h("span", { text: `${fmtCount(cores)} cores` }),
      h("span", { class: "c-fin", text: `${fmtCount(this.workers.reduce((n, w) => n + (Number(w.finished) || 0), 0))} finished` }),
      h("span", { class: "c-err", text: `${fmtCount(this.workers.reduce((n, w) => n + (Number(w.error) || 0), 0))} errors` }),
      this.selection.size ? h("span", { class: "sel-count", text: `${this.selection.size} selected` }) : null);
  }

  selectionChanged({ quiet = false } = {}) {
    for (const tr of this.tbody.children) {
      const w = this.byName.get(tr.dataset.name);
      if (!w) continue;
      tr.className = this.rowClass(w);
      tr.setAttribute("aria-selected", String(this.selection.has(w.name)));
    }
    const order = this.order();
    const n = order.filter((x) => this.selection.has(x)).length;
    this.selectAllBox.checked = n > 0 && n === order.length;
    this.selectAllBox.indeterminate = n > 0 && n < order.length;
    if (!quiet) {
      this.renderSummary();
      this.tbody.querySelector("tr.cursor")?.scrollIntoView({ block: "nearest" });
    }
    const key = this.selection.list().sort().join("\n");
    if (key !== this.affFor || !this.affDirty()) this.fillAffinity(key);
  }

  // ---- affinity -----------------------------------------------------------------------------

  fillAffinity(key) {
    this.affFor = key;
    const names = this.selection.list();
    const values = names.map((n) => this.byName.get(n)).filter(Boolean).map((w) => String(w.affinity || ""));
    const mixed = values.some((v) => v !== values[0]);
    this.affOriginal = mixed ? null : values[0] ?? "";
    this.affText.value = mixed ? "" : this.affOriginal;
    this.affText.placeholder = mixed ? "(different rules: what you type replaces them all)" : "one rule per line, e.g.\nlinux,gpu\nlinux";
    this.affText.disabled = !names.length;
    this.affTouched = false;
    fill(this.affSummary, names.length
      ? h("span", null, h("strong", { text: names.length === 1 ? names[0] : `${names.length} workers` }))
      : h("span", { class: "muted", text: "Select workers to edit their affinity rules." }));
    this.markAffinity(true);
  }

  affDirty() {
    return this.affText && (this.affOriginal === null ? this.affTouched : this.affText.value !== this.affOriginal);
  }

  markAffinity(reset = false) {
    if (!reset) this.affTouched = true;
    const dirty = this.affDirty();
    this.affLabel.classList.toggle("changed", dirty);
    this.affLabel.classList.toggle("mixed", this.affOriginal === null && !dirty && this.selection.size > 0);
    this.affUpdate.disabled = !dirty || !this.selection.size;
  }

  async saveAffinity() {
    const names = this.selection.list();
    if (!names.length || !this.affDirty()) return;
    const value = this.affText.value.split(/\r?\n/).map((l) => l.split(",").map((t) => t.trim()).filter(Boolean).join(",")).filter(Boolean).join("\n");
    const body = Object.fromEntries(names.map((n) => [n, { affinity: value }]));
    const done = await guarded(() => API.post("/api/workers", body));
    if (done === undefined) return;
    notify.ok(`Affinity updated on ${names.length} worker${names.length > 1 ? "s" : ""}`);
    this.affFor = null;
    this.affTouched = false;
    this.affOriginal = value;
    await this.load();
    this.fillAffinity(this.selection.list().sort().join("\n"));
  }

  // ---- actions ------------------------------------------------------------------------------

  selected() {
    const names = this.selection.list();
    if (!names.length) notify.info("Select one or more workers first.");
    return names;
  }

  async action(kind) {
    const names = this.selected();
    if (!names.length) return;
    if (kind === "terminate") {
      const ok = await confirmDialog(`Terminate ${names.length} instance${names.length > 1 ? "s" : ""}?`,
        "Cloud mode: the instances are shut down and their running jobs go back to the queue.", "Terminate", true);
      if (!ok) return;
    }
    const done = await guarded(() => API.post(`/api/${kind}workers`, names));
    if (done === undefined) return;
    if (kind === "clearsick") {
      const n = done.cleared.length;
      notify.ok(n ? `Cleared ${done.cleared.join(", ")}` : "None of them was SICK");
      this.load();
      return;
    }
    const verb = { start: "Started", stop: "Stopped", terminate: "Terminating" }[kind];
    notify.ok(`${verb} ${names.length} worker${names.length > 1 ? "s" : ""}`);
    this.load();
  }

  async remove() {
    const names = this.selected();
    if (!names.length) return;
    const ok = await confirmDialog(`Delete ${names.length} worker${names.length > 1 ? "s" : ""}?`,
      "They are forgotten by the server; a worker that is still running registers again at its next contact.", "Delete", true);
    if (!ok) return;
    const done = await guarded(() => API.del("/api/workers", names));
    if (done === undefined) return;
    notify.ok(`Deleted ${names.length} worker${names.length > 1 ? "s" : ""}`);
    this.selection.clear();
    this.load();
  }

  activity() {
    const name = this.selection.cursor ?? this.selection.list()[0];
    this.app.navigate(name ? `#/activities?worker=${encodeURIComponent(name)}` : "#/activities");
  }

  onKey(e) {
    const order = this.order();
    const ctrl = e.ctrlKey || e.metaKey;
    if (e.key === "ArrowDown" || e.key === "j") this.selection.move(1, order, { shift: e.shiftKey });
    else if (e.key === "ArrowUp" || e.key === "k") this.selection.move(-1, order, { shift: e.shiftKey });
    else if (e.key === "Home") this.selection.move(0, order, { shift: e.shiftKey, absolute: 0 });
    else if (e.key === "End") this.selection.move(0, order, { shift: e.shiftKey, absolute: -1 });
    else if (e.key === " ") this.selection.toggleCursor();
    else if (ctrl && e.key.toLowerCase() === "a") this.selection.set(order);
    else if (e.key === "Escape") this.selection.clear();
    else if (e.key === "Delete") this.remove();
    else if (e.key === "Enter") this.activity();
    else if (e.key === "/") {
      this.filterInput.focus();
      this.filterInput.select();
    } else if (!ctrl && e.key === "s") this.action("start");
    else if (!ctrl && e.key === "S") this.action("stop");
    else if (!ctrl && e.key === "e") this.affText.focus();
    else return false;
    return true;
  }
}
