// The Jobs view: one group of the job tree at a time (breadcrumb navigation), paged, sorted
// and filtered by the server, refreshed by asking only for what changed since the last answer.

import * as API from "./api.js";
import { h, clear, fill, safeHref, debounce } from "./dom.js";
import { fmtTime, fmtDuration, fmtPercent, fmtCount, fmtMB } from "./format.js";
import * as prefs from "./prefs.js";
import { notify, guarded, confirmDialog, Selection, headerRow, stateBadge, progressBar } from "./ui.js";
import { JobPanel } from "./jobpanel.js";

export const JOB_STATES = ["WAITING", "PENDING", "WORKING", "FINISHED", "ERROR", "PAUSED"];

const DEFAULT_FILTERS = { states: [], user: "", text: "", affinity: "", worker: "" };
const DEFAULT_PREFS = { sort: "order", order: "asc", limit: 100, filters: DEFAULT_FILTERS, hidden: [], panel: "" };
const PAGE_SIZES = [50, 100, 250, 500, 1000];
const CLIPBOARD_KEY = "coalition5.clipboard";

export function isGroup(job) {
  if (typeof job.children === "number") return job.children > 0;
  return (job.total || 0) > 1;
}

/** A job one can "enter": a group, or an empty-command job meant to become one. */
function enterable(job) {
  return isGroup(job) || !String(job.command || "").trim();
}

function counters(job) {
  if (isGroup(job)) {
    return { fin: job.total_finished, wrk: job.total_working, err: job.total_errors, tot: job.total };
  }
  // A leaf: its own runs. `errors` counts failed runs when the server reports fail_count.
  return {
    fin: job.state === "FINISHED" ? 1 : 0,
    wrk: job.state === "WORKING" ? 1 : 0,
    err: job.fail_count ?? job.errors ?? 0,
    tot: 1,
  };
}

function urlCell(job) {
  const href = safeHref(job.url);
  if (href) return h("a", { href, target: "_blank", rel: "noopener noreferrer", title: job.url, text: "Open" });
  return job.url ? h("span", { class: "muted", title: `not a web link: ${job.url}`, text: "—" }) : "";
}

// A reason, whole in its tooltip (the cell is cut to its width).
function reasonCell(reason) {
  return reason ? h("span", { title: reason, text: reason }) : "";
}

function titleCell(job) {
  const group = isGroup(job);
  return h("span", { class: group ? "job-title group" : "job-title" },
    group ? h("span", { class: "icon-group", "aria-hidden": "true", text: "▸" }) : null,
    h("span", { text: job.title || `job ${job.id}` }));
}

function progressCell(job) {
  const p = Number(job.progress) || 0;
  const bar = progressBar(p, fmtPercent(p));
  if (job.local_progress && job.state === "WORKING") bar.title = `local ${fmtPercent(job.local_progress)}`;
  return bar;
}

export const COLUMNS = [
  { key: "id", label: "ID", sort: "id", cls: "num", render: (j) => String(j.id) },
  { key: "title", label: "Title", sort: "title", cls: "title", render: titleCell },
  { key: "url", label: "URL", sort: "url", cls: "narrow", render: urlCell },
  { key: "user", label: "User", sort: "user", render: (j) => j.user || "" },
  { key: "state", label: "State", sort: "state", cls: "narrow", render: (j) => stateBadge(j.state) },
  { key: "priority", label: "Prio", title: "Priority", sort: "priority", cls: "num", render: (j) => String(j.priority ?? "") },
  { key: "finished", label: "Done", title: "Finished", sort: "total_finished", cls: "num c-fin", render: (j) => String(counters(j).fin ?? "") },
  { key: "working", label: "Run", title: "Working", sort: "total_working", cls: "num c-wrk", render: (j) => String(counters(j).wrk ?? "") },
  { key: "errors", label: "Err", title: "Errors", sort: "total_errors", cls: "num c-err", render: (j) => String(counters(j).err ?? "") },
  { key: "total", label: "Total", sort: "total", cls: "num", render: (j) => String(counters(j).tot ?? "") },
  { key: "progress", label: "Progress", sort: "progress", cls: "progress", render: progressCell },
  // Why the last run ended: exit code, signal, timeout, stall, log rule, lost worker, handback.
  { key: "reason", label: "Reason", title: "Why the last run ended", sort: "reason", cls: "reason", render: (j) => reasonCell(j.reason) },
  { key: "affinity", label: "Affinity", sort: "affinity", render: (j) => j.affinity || "" },
  { key: "timeout", label: "Timeout", sort: "timeout", cls: "num", render: (j) => (j.timeout ? fmtDuration(j.timeout) : "") },
  { key: "worker", label: "Worker", sort: "worker", render: (j) => j.worker || "" },
  { key: "start_time", label: "Started", sort: "start_time", cls: "time", render: (j) => fmtTime(j.start_time) },
  { key: "duration", label: "Duration", sort: "duration", cls: "num", render: (j) => (j.start_time ? fmtDuration(j.duration) : "") },
  { key: "run_done", label: "Runs", title: "Runs done", sort: "run_done", cls: "num", render: (j) => String(j.run_done ?? "") },
  { key: "command", label: "Command", sort: "command", cls: "mono clip", render: (j) => j.command || "" },
  { key: "dir", label: "Dir", title: "Working directory", sort: "dir", cls: "mono clip", render: (j) => j.dir || "" },
  { key: "limits", label: "Limits", title: "Farm-wide limits a run needs", sort: null, cls: "clip", render: (j) => j.limits || "" },
  { key: "needs", label: "Needs", title: "Cores, memory and GPUs a run asks for (inherited by children)", sort: null, cls: "clip", render: needsText },
  { key: "dependencies", label: "Deps", title: "Dependencies (and the job waited for frame by frame)", sort: null, cls: "clip", render: null },
];

/** A job's own resource request, in short: "4 cores · 8 GB · 1 GPU", "whole host". */
export function needsText(j) {
  const parts = [];
  if (j.cores) parts.push(`${j.cores} core${j.cores > 1 ? "s" : ""}`);
  if (j.memory) parts.push(fmtMB(j.memory));
  if (j.gpus) parts.push(`${j.gpus} GPU${j.gpus > 1 ? "s" : ""}`);
  if (j.exclusive) parts.push("whole host");
  return parts.join(" · ");
}

/** The dependencies cell: the jobs waited for, then the one waited for frame by frame. */
function depsText(job, deps) {
  const parts = (deps || []).map(String);
  if (job && job.frame_dep) parts.push(`frames of ${job.frame_dep}`);
  return parts.join(", ");
}

/** Would `job` appear under the current filters? (Used to patch rows in place.) */
function matches(job, f) {
  if (f.states.length) {
    const st = job.paused || job.state === "PAUSED" ? "PAUSED" : job.state;
    if (!f.states.includes(st)) return false;
  }
  if (f.user && job.user !== f.user) return false;
  if (f.worker && job.worker !== f.worker) return false;
  if (f.affinity && !String(job.affinity || "").includes(f.affinity)) return false;
  if (f.text) {
    const t = f.text.toLowerCase();
    if (!String(job.title || "").toLowerCase().includes(t) && !String(job.command || "").toLowerCase().includes(t)) {
      return false;
    }
  }
  return true;
}

export class JobsView {
  constructor(app) {
    this.app = app;
    this.prefs = prefs.load("jobs", DEFAULT_PREFS);
    this.prefs.filters = { ...DEFAULT_FILTERS, ...this.prefs.filters };
    if (!PAGE_SIZES.includes(this.prefs.limit)) this.prefs.limit = 100;
    this.parent = 0;
    this.offset = 0;
    this.rows = [];
    this.byId = new Map();
    this.known = new Map(); // id -> latest job object seen (selection may span pages)
    this.deps = new Map();
    this.total = 0;
    this.since = null;
    this.loadSeq = 0;
    this.path = [];
    this.titles = new Map([[0, "All jobs"]]);
    this.group = null;
    this.autoTicks = 0;
    this.selection = new Selection(() => this.selectionChanged());
    this.clipboard = this.readClipboard();
    this.panel = new JobPanel(this);
  }

  // ---- lifecycle ---------------------------------------------------------------------------

  mount(root, params) {
    const parent = Number(params.id) || 0;
    if (parent !== this.parent) {
      this.selection.ids = new Set();
      this.selection.anchor = this.selection.cursor = null;
      this.offset = 0;
    }
    this.parent = parent;
    this.root = root;
    const state = params.query && params.query.get("state");
    if (state && JOB_STATES.includes(state)) {
      // A link from the Overview: show that state only.
      this.prefs.filters = { ...structuredClone(DEFAULT_FILTERS), states: [state] };
      this.offset = 0;
      this.savePrefs();
      history.replaceState(null, "", parent ? `#/jobs/${parent}` : "#/jobs");
    }
    this.build();
    this.load();
    this.loadPath();
  }

  unmount() {
    this.loadSeq++;
    this.panel.detach();
  }

  build() {
    const f = this.prefs.filters;
    this.crumbs = h("nav", { class: "crumbs", "aria-label": "Group path" });
    this.groupInfo = h("div", { class: "group-info" });

    const NEEDS = { "+ Add": "create", Edit: "edit", Start: "edit", Pause: "edit", Reset: "edit", "Reset errors": "edit",
      Cut: "edit", Paste: "edit", Delete: "delete" };
    const btn = (label, title, fn, cls = "btn") => h("button", { class: cls, title, text: label, onclick: fn,
      dataset: NEEDS[label] ? { needs: NEEDS[label] } : undefined });
    this.pasteBtn = btn("Paste", "Move the cut jobs into this group (v)", () => this.paste());
    this.toolbar = h("div", { class: "toolbar", role: "toolbar", "aria-label": "Job actions" },
      h("div", { class: "btn-group" },
        btn("+ Add", "Add a job or a frame range into this group (a)", () => this.panel.open("add"), "btn primary"),
        btn("Edit", "Edit the selected jobs (e)", () => this.panel.open("edit"))),
      h("div", { class: "btn-group" },
        btn("Start", "Start (unpause) the selected jobs (s)", () => this.action("start")),
        btn("Pause", "Pause the selected jobs (p)", () => this.action("pause"))),
      h("div", { class: "btn-group" },
        btn("Reset", "Reset the selected jobs and their children to WAITING (Shift+R)", () => this.action("reset")),
        btn("Reset errors", "Reset only the jobs in ERROR (Shift+E)", () => this.action("reseterror"))),
      h("div", { class: "btn-group" },
        btn("Cut", "Cut the selected jobs to move them into another group (x)", () => this.cut()),
        this.pasteBtn),
      h("div", { class: "btn-group" },
        btn("Log", "Open the log of the selected job (l)", () => this.openLog()),
        btn("Activity", "Runs of the selected job", () => this.openActivity())),
      h("div", { class: "btn-group" },
        btn("Delete", "Delete the selected jobs and their children (Del)", () => this.remove(), "btn danger")),
      h("div", { class: "spacer" }),
      this.selectMenu(),
      h("button", { class: "btn", title: "Download the jobs of this view (every page, as filtered and sorted) as CSV", text: "CSV",
        onclick: () => this.exportCsv() }),
      this.columnsMenu());

    // Filters.
    this.stateChips = JOB_STATES.map((st) => {
      const chip = h("button", {
        class: `chip st-${st}${f.states.includes(st) ? " on" : ""}`, "aria-pressed": String(f.states.includes(st)),
        title: `Show ${st} jobs`, text: st, dataset: { state: st },
        onclick: () => {
          const states = new Set(this.prefs.filters.states);
          if (states.has(st)) states.delete(st);
          else states.add(st);
          this.setFilter({ states: JOB_STATES.filter((x) => states.has(x)) });
        },
      });
      return chip;
    });
    const input = (key, placeholder, width, list) => {
      const el = h("input", {
        type: "search", class: `filter-${key}`, placeholder, value: f[key] || "", size: width,
        "aria-label": placeholder, list, spellcheck: "false",
      });
      const apply = debounce(() => this.setFilter({ [key]: el.value.trim() }), 250);
      el.addEventListener("input", apply);
      el.addEventListener("keydown", (e) => {
        if (e.key === "Enter") {
          apply.cancel();
          this.setFilter({ [key]: el.value.trim() });
        } else if (e.key === "Escape") {
          el.blur();
        }
      });
      return el;
    };
    this.userList = h("datalist", { id: "job-users" });
    this.workerList = h("datalist", { id: "job-workers" });
    this.filterInputs = {
      text: input("text", "Search title or command  ( / )", 26),
      user: input("user", "User", 9, "job-users"),
      affinity: input("affinity", "Affinity", 9),
      worker: input("worker", "Worker", 10, "job-workers"),
    };
    this.resetFiltersBtn = h("button", { class: "btn link", text: "Reset filters", title: "Clear the filters and the sort",
      onclick: () => this.resetFilters() });
    this.filters = h("div", { class: "filters", role: "search" },
      h("div", { class: "chips", role: "group", "aria-label": "State filter" }, this.stateChips),
      this.filterInputs.text, this.filterInputs.user, this.filterInputs.affinity, this.filterInputs.worker,
      this.userList, this.workerList, this.resetFiltersBtn);

    // Table.
    this.thead = h("thead");
    this.tbody = h("tbody");
    this.table = h("table", { class: "grid jobs", "aria-label": "Jobs", "aria-multiselectable": "true" }, this.thead, this.tbody);
    this.tableWrap = h("div", { class: "table-wrap", tabindex: "0" }, this.table);
    this.tbody.addEventListener("mousedown", (e) => {
      if (e.shiftKey || e.ctrlKey || e.metaKey) e.preventDefault(); // no text selection on range clicks
    });
    this.tbody.addEventListener("click", (e) => this.rowClick(e));
    this.tbody.addEventListener("dblclick", (e) => this.rowOpen(e));
    this.emptyNote = h("div", { class: "empty", hidden: true });

    // Footer.
    this.footInfo = h("div", { class: "foot-info" });
    this.pageInfo = h("span", { class: "page-info" });
    this.sortInfo = h("span", { class: "sort-info muted" });
    const pageBtn = (label, title, fn) => h("button", { class: "btn icon", title, text: label, onclick: fn });
    this.pageSize = h("select", { "aria-label": "Jobs per page", title: "Jobs per page" },
      PAGE_SIZES.map((n) => h("option", { value: String(n), text: `${n} / page`, selected: n === this.prefs.limit })));
    this.pageSize.addEventListener("change", () => {
      this.prefs.limit = Number(this.pageSize.value);
      this.offset = 0;
      this.savePrefs();
      this.load();
    });
    this.pager = h("div", { class: "pager" },
      this.sortInfo,
      pageBtn("«", "First page", () => this.page(-Infinity)),
      pageBtn("‹", "Previous page ( [ )", () => this.page(-1)),
      this.pageInfo,
      pageBtn("›", "Next page ( ] )", () => this.page(1)),
      pageBtn("»", "Last page", () => this.page(Infinity)),
      this.pageSize);
    this.footer = h("div", { class: "footer" }, this.footInfo, this.pager);

    const main = h("div", { class: "jobs-main" }, this.tableWrap, this.emptyNote);
    this.body = h("div", { class: "jobs-body" }, main, this.panel.element());
    fill(this.root, h("section", { class: "view jobs-view" },
      h("div", { class: "viewbar" }, this.crumbs, this.groupInfo),
      this.toolbar, this.filters, this.body, this.footer));
    this.renderCrumbs();
    this.renderHead();
    this.updateFilterUi();
    this.updatePaste();
    if (this.prefs.panel) this.panel.open(this.prefs.panel, { focus: false });
  }

  columnsMenu() {
    const details = h("details", { class: "menu" }, h("summary", { class: "btn", title: "Choose the visible columns", text: "Columns" }));
    const list = h("div", { class: "menu-body" });
    for (const col of COLUMNS) {
      const box = h("input", { type: "checkbox", checked: !this.prefs.hidden.includes(col.key) });
      box.addEventListener("change", () => {
        const hidden = new Set(this.prefs.hidden);
        if (box.checked) hidden.delete(col.key);
        else hidden.add(col.key);
        this.prefs.hidden = COLUMNS.map((c) => c.key).filter((k) => hidden.has(k));
        this.savePrefs();
        this.renderHead();
        this.renderRows();
      });
      list.append(h("label", { class: "menu-item" }, box, h("span", { text: col.title || col.label })));
    }
    details.append(list);
    details.addEventListener("keydown", (e) => {
      if (e.key === "Escape") details.open = false;
    });
    return details;
  }

  selectMenu() {
    const details = h("details", { class: "menu" }, h("summary", { class: "btn", title: "Select rows of this page", text: "Select" }));
    const item = (label, fn) => h("button", { class: "menu-item menu-action", type: "button", text: label, onclick: () => {
      details.open = false;
      fn();
    } });
    const byState = (st) => {
      const ids = this.rows.filter((j) => (j.paused ? "PAUSED" : j.state) === st).map((j) => j.id);
      this.selection.set(ids, { anchor: ids[0] ?? null, cursor: ids[0] ?? null });
    };
    details.append(h("div", { class: "menu-body single" },
      item("All on this page", () => this.selectAll()),
      item("None", () => this.selection.clear()),
      item("Invert", () => {
        const ids = this.order().filter((id) => !this.selection.has(id));
        this.selection.set(ids, { anchor: ids[0] ?? null });
      }),
      JOB_STATES.map((st) => item(`${st.charAt(0)}${st.slice(1).toLowerCase()}`, () => byState(st)))));
    details.addEventListener("keydown", (e) => {
      if (e.key === "Escape") details.open = false;
    });
    return details;
  }

  /** Every job of the view (all pages, with the filters and the sort) as a CSV download. */
  async exportCsv() {
    const cols = ["id", "parent", "title", "state", "user", "priority", "total", "total_finished", "total_working",
      "total_errors", "progress", "affinity", "timeout", "retry", "worker", "start_time", "duration", "run_done",
      "command", "dir", "url"];
    const quote = (v) => {
      const t = v === null || v === undefined ? "" : String(v);
      // Quote always; neutralise spreadsheet formulas (=, +, -, @ at the start of a cell).
      return `"${(/^[=+\-@\t\r]/.test(t) ? `'${t}` : t).replace(/"/g, '""')}"`;
    };
    const lines = [cols.join(",")];
    const note = notify.info("Preparing the CSV…");
    try {
      for (let offset = 0; offset < 200000; offset += 10000) {
        const page = await API.get("/api/jobs", this.params({ offset, limit: 10000 }));
        const jobs = Array.isArray(page) ? page : page.jobs;
        for (const j of jobs) lines.push(cols.map((c) => quote(j[c])).join(","));
        if (Array.isArray(page) || jobs.length < 10000) break;
      }
    } catch (err) {
      note.remove();
      notify.error(err);
      return;
    }
    note.remove();
    const url = URL.createObjectURL(new Blob([lines.join("\r\n") + "\r\n"], { type: "text/csv;charset=utf-8" }));
    const name = this.parent ? `coalition-group-${this.parent}.csv` : "coalition-jobs.csv";
    const a = h("a", { href: url, download: name });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 10000);
    notify.ok(`Exported ${fmtCount(lines.length - 1)} jobs`);
  }

  visibleColumns() {
    return COLUMNS.filter((c) => !this.prefs.hidden.includes(c.key));
  }

  savePrefs() {
    prefs.save("jobs", this.prefs);
  }

  // ---- loading -----------------------------------------------------------------------------

  params(extra = {}) {
    const f = this.prefs.filters;
    return {
      parent: this.parent,
      state: f.states.join(","),
      user: f.user,
      text: f.text,
      affinity: f.affinity,
      worker: f.worker,
      sort: this.prefs.sort,
      order: this.prefs.order,
      offset: this.offset,
      limit: this.prefs.limit,
      ...extra,
    };
  }

  async load() {
    const seq = ++this.loadSeq;
    this.root.querySelector(".jobs-view")?.classList.add("loading");
    try {
      let answer = await API.get("/api/jobs", this.params());
      if (seq !== this.loadSeq) return;
      if (Array.isArray(answer)) {
        // A server without the paged API: page on this side so the view still works.
        const all = answer.filter((j) => matches(j, this.prefs.filters));
        answer = { jobs: all.slice(this.offset, this.offset + this.prefs.limit), total: all.length, now: null };
      }
      const total = Number(answer.total) || 0;
      if (!answer.jobs.length && total > 0 && this.offset > 0) {
        this.offset = Math.max(0, Math.floor((total - 1) / this.prefs.limit) * this.prefs.limit);
        return this.load();
      }
      this.rows = answer.jobs;
      this.total = total;
      this.since = typeof answer.now === "number" ? answer.now : null;
      this.byId = new Map(this.rows.map((j) => [j.id, j]));
      for (const j of this.rows) if (this.known.has(j.id) || this.selection.has(j.id)) this.known.set(j.id, j);
      this.ingestDeps(this.rows);
      this.renderRows();
      this.renderFooter();
      this.noteNames();
      // Dependencies are not in list objects: ask the group for its children's, while it is
      // small enough for that answer to stay cheap (the whole group, not just this page).
      if (!this.rows.every((j) => Array.isArray(j.dependencies)) && this.parentSize() <= 5000) this.loadDeps(seq);
      this.app.markUpdated();
    } catch (err) {
      if (seq === this.loadSeq) {
        notify.error(err);
        this.showEmpty(`Could not load the jobs: ${err.message}`);
      }
    } finally {
      if (seq === this.loadSeq) this.root.querySelector(".jobs-view")?.classList.remove("loading");
    }
  }

  /** Children of the current group, when known (its `children` count), else the total shown. */
  parentSize() {
    const f = this.prefs.filters;
    const filtered = f.states.length || f.user || f.text || f.affinity || f.worker;
    if (this.parent && this.group && typeof this.group.children === "number") return this.group.children;
    return filtered ? Infinity : this.total;
  }

  ingestDeps(jobs) {
    for (const j of jobs) if (Array.isArray(j.dependencies)) this.deps.set(j.id, j.dependencies);
  }

  /** The list objects carry no dependencies: ask the group for its children's, once a load. */
  async loadDeps(seq) {
    try {
      const pairs = await API.get(`/api/jobs/${this.parent}/childrendependencies`);
      if (seq !== this.loadSeq || !Array.isArray(pairs)) return;
      const map = new Map();
      for (const { id, dependency } of pairs) {
        if (!map.has(id)) map.set(id, []);
        map.get(id).push(dependency);
      }
      for (const j of this.rows) this.deps.set(j.id, map.get(j.id) || []);
      this.renderDepsCells();
    } catch (err) {
      // The dependencies column stays blank; an unknown group is reported by the main load.
      if (err.status && err.status !== 404) notify.error(err);
    }
  }

  async loadPath() {
    const parent = this.parent;
    const chain = [];
    let id = parent;
    this.group = null;
    try {
      for (let depth = 0; id && depth < 128; depth++) {
        const job = await API.get(`/api/jobs/${id}`);
        if (parent !== this.parent) return;
        if (depth === 0) this.group = job;
        this.titles.set(job.id, job.title || `job ${job.id}`);
        chain.unshift(job.id);
        id = Number(job.parent) || 0;
      }
    } catch (err) {
      notify.error(err);
    }
    this.path = chain;
    this.renderCrumbs();
    this.renderGroupInfo();
  }

  /**
   * Auto-refresh: ask only for the jobs changed since the last answer (every group at once:
   * `parent=all` is served from the updated_at index, and it also reveals jobs moved out of
   * this group). Rows on this page are patched in place; anything that can move rows or the
   * total reloads the page (one indexed query). A full reload every 15th tick also catches
   * deletions made elsewhere.
   */
  async refresh({ auto = false } = {}) {
    this.autoTicks++;
    if (!auto || this.since === null || this.autoTicks % 15 === 0) {
      await this.load();
      if (this.parent) this.refreshGroup();
      return;
    }
    const seq = this.loadSeq;
    try {
      const answer = await API.get("/api/jobs", {
        parent: "all", changed_since: this.since - 1, sort: "id", order: "asc", limit: 1000,
      });
      if (seq !== this.loadSeq) return;
      if (typeof answer.now === "number") this.since = answer.now;
      if (answer.total > answer.jobs.length) {
        await this.load();
        if (this.parent) this.refreshGroup();
        return;
      }
      let reload = false;
      for (const job of answer.jobs) {
        if (job.id === this.parent) {
          this.group = job;
          this.renderGroupInfo();
          continue;
        }
        const old = this.byId.get(job.id);
        if (Number(job.parent) !== this.parent) {
          if (old) reload = true; // moved to another group
          continue;
        }
        const inView = matches(job, this.prefs.filters);
        if (old) {
          const sortKey = this.prefs.sort === "order" ? "priority" : this.prefs.sort;
          if (!inView || (sortKey !== "id" && old[sortKey] !== job[sortKey])) reload = true;
          else this.patchRow(job);
        } else if (inView) {
          reload = true; // new here, or now matching the filters
        }
      }
      if (reload) return this.load();
      this.renderFooter();
      this.app.markUpdated();
    } catch (err) {
      notify.error(err);
    }
  }

  async refreshGroup() {
    if (!this.parent) return;
    try {
      this.group = await API.get(`/api/jobs/${this.parent}`);
      this.renderGroupInfo();
    } catch (err) {
      if (err.status === 404) {
        notify.error(`Group ${this.parent} no longer exists`);
        this.app.navigate("#/jobs");
      } else {
        notify.error(err);
      }
    }
  }

  // ---- rendering ---------------------------------------------------------------------------

  renderCrumbs() {
    const parts = [0, ...this.path.filter((id) => id)];
    if (this.parent && !this.path.length) parts.push(this.parent);
    clear(this.crumbs);
    parts.forEach((id, i) => {
      const last = i === parts.length - 1;
      const label = this.titles.get(id) || `job ${id}`;
      if (i) this.crumbs.append(h("span", { class: "sep", "aria-hidden": "true", text: "›" }));
      if (last) this.crumbs.append(h("span", { class: "crumb current", "aria-current": "page", text: label }));
      else this.crumbs.append(h("a", { class: "crumb", href: id ? `#/jobs/${id}` : "#/jobs", text: label }));
    });
  }

  renderGroupInfo() {
    clear(this.groupInfo);
    const g = this.group;
    if (!g || !this.parent) return;
    const c = counters(g);
    fill(this.groupInfo,
      stateBadge(g.state),
      progressBar(g.progress, fmtPercent(g.progress)),
      h("span", { class: "gi c-fin", title: "finished", text: `${fmtCount(c.fin)} done` }),
      h("span", { class: "gi c-wrk", title: "working", text: `${fmtCount(c.wrk)} running` }),
      h("span", { class: "gi c-err", title: "errors", text: `${fmtCount(c.err)} errors` }),
      h("span", { class: "gi", title: "leaves", text: `${fmtCount(c.tot)} total` }),
      g.user ? h("span", { class: "gi muted", text: g.user }) : null,
    );
  }

  renderHead() {
    const all = h("input", { type: "checkbox", class: "select-all", title: "Select all on this page (Ctrl+A)", "aria-label": "Select all on this page" });
    all.addEventListener("change", () => {
      if (all.checked) this.selectAll();
      else this.selection.clear();
    });
    this.selectAllBox = all;
    fill(this.thead, headerRow(this.visibleColumns(), this.prefs.sort, this.prefs.order,
      (key) => this.sortBy(key), h("th", { class: "check" }, all)));
  }

  renderRows() {
    const frag = document.createDocumentFragment();
    const cols = this.visibleColumns();
    for (const job of this.rows) frag.append(this.buildRow(job, cols));
    fill(this.tbody, frag);
    if (!this.rows.length) {
      const f = this.prefs.filters;
      const filtered = f.states.length || f.user || f.text || f.affinity || f.worker;
      this.showEmpty(filtered ? "No job matches the filters." : "This group is empty. Add a job with “+ Add” (a).");
    } else {
      this.emptyNote.hidden = true;
    }
    this.updateSelectAll();
    performance.mark("coalition:jobs-rendered"); // read by bench/web_open.py
  }

  showEmpty(text) {
    this.emptyNote.textContent = text;
    this.emptyNote.hidden = false;
  }

  buildRow(job, cols) {
    const tr = h("tr", {
      dataset: { id: String(job.id) },
      class: this.rowClass(job),
      "aria-selected": String(this.selection.has(job.id)),
    });
    tr.append(h("td", { class: "check" }, h("span", { class: "box", "aria-hidden": "true" })));
    for (const col of cols) {
      const td = h("td", { class: col.cls || "", dataset: { col: col.key } });
      if (col.key === "dependencies") {
        td.textContent = depsText(job, this.deps.get(job.id));
      } else {
        const content = col.render(job);
        if (content instanceof Node) td.append(content);
        else td.textContent = content;
        if (col.cls && col.cls.includes("clip") && content) td.title = String(content);
      }
      tr.append(td);
    }
    return tr;
  }

  rowClass(job) {
    const cls = [];
    if (this.selection.has(job.id)) cls.push("selected");
    if (this.selection.cursor === job.id) cls.push("cursor");
    if (this.clipboard.ids.includes(job.id)) cls.push("cut");
    if (isGroup(job)) cls.push("is-group");
    if (job.paused) cls.push("is-paused");
    return cls.join(" ");
  }

  patchRow(job) {
    this.byId.set(job.id, job);
    const i = this.rows.findIndex((j) => j.id === job.id);
    if (i >= 0) this.rows[i] = job;
    if (this.known.has(job.id)) this.known.set(job.id, job);
    this.ingestDeps([job]);
    const tr = this.tbody.querySelector(`tr[data-id="${job.id}"]`);
    if (tr) tr.replaceWith(this.buildRow(job, this.visibleColumns()));
  }

  renderDepsCells() {
    for (const td of this.tbody.querySelectorAll('td[data-col="dependencies"]')) {
      const id = Number(td.parentElement.dataset.id);
      td.textContent = depsText(this.byId.get(id), this.deps.get(id));
      td.title = td.textContent;
    }
  }

  renderFooter() {
    const n = this.rows.length;
    const from = n ? this.offset + 1 : 0;
    this.pageInfo.textContent = `${fmtCount(from)}–${fmtCount(this.offset + n)} of ${fmtCount(this.total)}`;
    const sortCol = COLUMNS.find((c) => c.sort === this.prefs.sort);
    this.sortInfo.textContent = sortCol ? `by ${(sortCol.title || sortCol.label).toLowerCase()} ${this.prefs.order === "asc" ? "↑" : "↓"}` : "queue order";
    this.sortInfo.title = sortCol ? "Click a column header to sort; Reset filters goes back to the queue order" :
      "The order in which the jobs are dispatched (priority, then age); click a column header to sort";
    let fin = 0, wrk = 0, err = 0, durSum = 0, durN = 0;
    for (const j of this.rows) {
      const c = counters(j);
      fin += Number(c.fin) || 0;
      wrk += Number(c.wrk) || 0;
      err += Number(c.err) || 0;
      if (j.state === "FINISHED" && !isGroup(j)) {
        durSum += Number(j.duration) || 0;
        durN++;
      }
    }
    fill(this.footInfo, 
      h("span", { text: `${fmtCount(this.total)} jobs` }),
      h("span", { class: "c-fin", text: `${fmtCount(fin)} finished` }),
      h("span", { class: "c-wrk", text: `${fmtCount(wrk)} working` }),
      h("span", { class: "c-err", text: `${fmtCount(err)} errors` }),
      durN ? h("span", { title: "Average duration of the finished jobs on this page", text: `avg ${fmtDuration(durSum / durN)}` }) : null,
      this.selection.size ? h("span", { class: "sel-count", text: `${fmtCount(this.selection.size)} selected` }) : null,
    );
    const last = this.offset + n >= this.total;
    const [first, prev, next, end] = this.pager.querySelectorAll("button");
    first.disabled = prev.disabled = this.offset === 0;
    next.disabled = end.disabled = last;
  }

  noteNames() {
    const addOptions = (list, values) => {
      const have = new Set([...list.options].map((o) => o.value));
      for (const v of values) if (v && !have.has(v)) list.append(h("option", { value: v }));
    };
    addOptions(this.userList, this.rows.map((j) => j.user));
    addOptions(this.workerList, this.rows.map((j) => j.worker));
  }

  // ---- sort, filter, paging ------------------------------------------------------------

  sortBy(key) {
    if (this.prefs.sort === key) this.prefs.order = this.prefs.order === "asc" ? "desc" : "asc";
    else {
      this.prefs.sort = key;
      this.prefs.order = ["id", "title", "user", "state", "affinity", "worker", "command", "dir", "url"].includes(key) ? "asc" : "desc";
    }
    this.offset = 0;
    this.savePrefs();
    this.renderHead();
    this.load();
  }

  setFilter(change) {
    this.prefs.filters = { ...this.prefs.filters, ...change };
    this.offset = 0;
    this.savePrefs();
    this.updateFilterUi();
    this.load();
  }

  resetFilters() {
    this.prefs.filters = structuredClone(DEFAULT_FILTERS);
    this.prefs.sort = DEFAULT_PREFS.sort;
    this.prefs.order = DEFAULT_PREFS.order;
    this.offset = 0;
    this.savePrefs();
    for (const [key, el] of Object.entries(this.filterInputs)) el.value = this.prefs.filters[key];
    this.updateFilterUi();
    this.renderHead();
    this.load();
  }

  updateFilterUi() {
    const f = this.prefs.filters;
    for (const chip of this.stateChips) {
      const on = f.states.includes(chip.dataset.state);
      chip.classList.toggle("on", on);
      chip.setAttribute("aria-pressed", String(on));
    }
    for (const [key, el] of Object.entries(this.filterInputs)) el.classList.toggle("active", Boolean(f[key]));
    const active = f.states.length || f.user || f.text || f.affinity || f.worker ||
      this.prefs.sort !== DEFAULT_PREFS.sort || this.prefs.order !== DEFAULT_PREFS.order;
    this.resetFiltersBtn.disabled = !active;
  }

  page(delta) {
    const limit = this.prefs.limit;
    const lastOffset = Math.max(0, Math.floor((this.total - 1) / limit) * limit);
    let offset;
    if (delta === -Infinity) offset = 0;
    else if (delta === Infinity) offset = lastOffset;
    else offset = Math.max(0, Math.min(lastOffset, this.offset + delta * limit));
    if (offset === this.offset) return;
    this.offset = offset;
    this.load();
    this.tableWrap.scrollTop = 0;
  }

  // ---- selection ----------------------------------------------------------------------------

  order() {
    return this.rows.map((j) => j.id);
  }

  rowFromEvent(e) {
    const tr = e.target.closest("tr[data-id]");
    return tr ? Number(tr.dataset.id) : null;
  }

  rowClick(e) {
    if (e.target.closest("a")) return; // the "Open" link
    const id = this.rowFromEvent(e);
    if (id === null) return;
    const toggle = e.ctrlKey || e.metaKey || Boolean(e.target.closest("td.check"));
    this.selection.click(id, this.order(), { ctrl: toggle, shift: e.shiftKey });
    this.tableWrap.focus({ preventScroll: true });
  }

  rowOpen(e) {
    if (e.target.closest("a, td.check")) return;
    const id = this.rowFromEvent(e);
    if (id === null) return;
    this.open(this.byId.get(id));
  }

  open(job) {
    if (!job) return;
    if (enterable(job)) {
      this.titles.set(job.id, job.title || `job ${job.id}`);
      this.app.navigate(`#/jobs/${job.id}`);
    } else {
      this.app.navigate(`#/log/${job.id}`);
    }
  }

  selectAll() {
    const order = this.order();
    this.selection.set(order, { anchor: order[0] ?? null, cursor: this.selection.cursor ?? order[0] ?? null });
  }

  selectionChanged() {
    for (const tr of this.tbody.children) {
      const id = Number(tr.dataset.id);
      const job = this.byId.get(id);
      if (!job) continue;
      tr.className = this.rowClass(job);
      tr.setAttribute("aria-selected", String(this.selection.has(id)));
    }
    for (const id of this.selection.ids) if (this.byId.has(id)) this.known.set(id, this.byId.get(id));
    for (const id of [...this.known.keys()]) if (!this.selection.has(id)) this.known.delete(id);
    const cur = this.tbody.querySelector("tr.cursor");
    if (cur) cur.scrollIntoView({ block: "nearest" });
    this.updateSelectAll();
    this.renderFooter();
    this.panel.selectionChanged();
  }

  updateSelectAll() {
    if (!this.selectAllBox) return;
    const order = this.order();
    const n = order.filter((id) => this.selection.has(id)).length;
    this.selectAllBox.checked = n > 0 && n === order.length;
    this.selectAllBox.indeterminate = n > 0 && n < order.length;
  }

  selectedIds({ need = true } = {}) {
    const ids = this.selection.list();
    if (!ids.length && need) notify.info("Select one or more jobs first (click, Ctrl+click, Shift+click).");
    return ids;
  }

  // ---- actions ------------------------------------------------------------------------------

  async action(kind) {
    const ids = this.selectedIds();
    if (!ids.length) return;
    const names = { start: "Start", pause: "Pause", reset: "Reset", reseterror: "Reset errors" };
    if (kind === "reset" || kind === "reseterror") {
      const what = kind === "reset" ? "back to WAITING, with their children" : "that are in ERROR back to WAITING";
      const ok = await confirmDialog(`${names[kind]} ${ids.length} job${ids.length > 1 ? "s" : ""}?`,
        `The selected jobs ${what}. Running ones are killed.`, names[kind]);
      if (!ok) return;
    }
    const done = await guarded(() => API.post(`/api/${kind}jobs`, ids));
    if (done !== undefined) {
      notify.ok(`${names[kind]}: ${ids.length} job${ids.length > 1 ? "s" : ""}`);
      await this.load();
      if (this.parent) this.refreshGroup();
    }
  }

  async remove() {
    const ids = this.selectedIds();
    if (!ids.length) return;
    const groups = ids.filter((id) => this.known.get(id) && isGroup(this.known.get(id))).length;
    const detail = `${groups ? `${groups} of them ${groups > 1 ? "are groups" : "is a group"}: every job inside goes too. ` : ""}` +
      "Running jobs are killed and their logs deleted. This cannot be undone.";
    const ok = await confirmDialog(`Delete ${ids.length} job${ids.length > 1 ? "s" : ""}?`, detail, "Delete", true);
    if (!ok) return;
    const done = await guarded(() => API.del("/api/jobs", ids));
    if (done !== undefined) {
      notify.ok(`Deleted ${ids.length} job${ids.length > 1 ? "s" : ""}`);
      this.selection.clear();
      await this.load();
      if (this.parent) this.refreshGroup();
    }
  }

  readClipboard() {
    try {
      const c = JSON.parse(sessionStorage.getItem(CLIPBOARD_KEY) || "null");
      if (c && Array.isArray(c.ids)) return c;
    } catch {
      // ignore
    }
    return { ids: [], from: 0 };
  }

  cut() {
    const ids = this.selectedIds();
    if (!ids.length) return;
    this.clipboard = { ids, from: this.parent };
    sessionStorage.setItem(CLIPBOARD_KEY, JSON.stringify(this.clipboard));
    notify.info(`Cut ${ids.length} job${ids.length > 1 ? "s" : ""}: open the target group and Paste (v).`);
    this.updatePaste();
    this.selectionChanged();
  }

  updatePaste() {
    const n = this.clipboard.ids.length;
    this.pasteBtn.textContent = n ? `Paste (${n})` : "Paste";
    this.pasteBtn.disabled = !n;
  }

  async paste() {
    const ids = this.clipboard.ids;
    if (!ids.length) return;
    if (ids.includes(this.parent) || this.path.some((id) => ids.includes(id))) {
      notify.error("Cannot move a group into itself or into one of its own children.");
      return;
    }
    const body = Object.fromEntries(ids.map((id) => [id, { parent: this.parent }]));
    const done = await guarded(() => API.post("/api/jobs", body));
    if (done !== undefined) {
      notify.ok(`Moved ${ids.length} job${ids.length > 1 ? "s" : ""} into ${this.titles.get(this.parent) || "this group"}`);
      this.clipboard = { ids: [], from: 0 };
      sessionStorage.removeItem(CLIPBOARD_KEY);
      this.updatePaste();
      this.selection.set(ids, { anchor: ids[0], cursor: ids[0] });
      await this.load();
      if (this.parent) this.refreshGroup();
    }
  }

  focusedJob() {
    const id = this.selection.cursor ?? this.selection.list()[0];
    return id !== undefined && id !== null ? id : null;
  }

  openLog() {
    const id = this.focusedJob();
    if (id === null) return notify.info("Select a job first.");
    this.app.navigate(`#/log/${id}`);
  }

  openActivity() {
    const id = this.focusedJob();
    this.app.navigate(id === null ? "#/activities" : `#/activities?job=${id}`);
  }

  goUp() {
    if (!this.parent) return;
    const up = this.path.length >= 2 ? this.path[this.path.length - 2] : (this.group ? Number(this.group.parent) || 0 : 0);
    this.app.navigate(up ? `#/jobs/${up}` : "#/jobs");
  }

  // ---- keyboard ----------------------------------------------------------------------------

  onKey(e) {
    const order = this.order();
    const ctrl = e.ctrlKey || e.metaKey;
    switch (e.key) {
      case "ArrowDown":
      case "j":
        if (e.altKey) return false;
        this.selection.move(1, order, { shift: e.shiftKey });
        return true;
      case "ArrowUp":
      case "k":
        if (e.altKey) {
          this.goUp();
          return true;
        }
        this.selection.move(-1, order, { shift: e.shiftKey });
        return true;
      case "Home":
        this.selection.move(0, order, { shift: e.shiftKey, absolute: 0 });
        return true;
      case "End":
        this.selection.move(0, order, { shift: e.shiftKey, absolute: -1 });
        return true;
      case " ":
        this.selection.toggleCursor();
        return true;
      case "Enter":
        this.open(this.byId.get(this.focusedJob()));
        return true;
      case "Backspace":
        this.goUp();
        return true;
      case "Escape":
        if (this.panel.isOpen()) this.panel.close();
        else this.selection.clear();
        return true;
      case "Delete":
        this.remove();
        return true;
      case "[":
        this.page(-1);
        return true;
      case "]":
        this.page(1);
        return true;
      case "/":
        this.filterInputs.text.focus();
        this.filterInputs.text.select();
        return true;
      default:
        break;
    }
    if (ctrl && e.key.toLowerCase() === "a") {
      this.selectAll();
      return true;
    }
    if (ctrl && e.key.toLowerCase() === "x") {
      this.cut();
      return true;
    }
    if (ctrl && e.key.toLowerCase() === "v") {
      this.paste();
      return true;
    }
    if (ctrl || e.altKey) return false;
    switch (e.key) {
      case "a": this.panel.open("add"); return true;
      case "e": this.panel.open("edit"); return true;
      case "f": this.panel.open("frames"); return true;
      case "o": this.panel.open("openjd"); return true;
      case "s": this.action("start"); return true;
      case "p": this.action("pause"); return true;
      case "R": this.action("reset"); return true;
      case "E": this.action("reseterror"); return true;
      case "x": this.cut(); return true;
      case "v": this.paste(); return true;
      case "l": this.openLog(); return true;
      default: return false;
    }
  }
}

export { matches as jobMatches, counters as jobCounters };
