// The side panel of the Jobs view: edit the selected jobs (only the changed fields are sent),
// add a job / a frame range into the current group, or submit an Open Job Description
// template there (openjdform.js).

import * as API from "./api.js";
import { h, clear, fill, debounce } from "./dom.js";
import { envToLines, linesToEnv, parseIdList, fmtCount } from "./format.js";
import * as prefs from "./prefs.js";
import { fillFrames } from "./framestats.js";
import { OpenJDForm } from "./openjdform.js";
import { notify, guarded } from "./ui.js";

const EDIT_FIELDS = [
  { key: "title", label: "Title" },
  { key: "priority", label: "Priority", type: "int", hint: "higher runs first (default 1000)" },
  { key: "command", label: "Command", type: "textarea", mono: true },
  { key: "timeout", label: "Timeout (s)", type: "int", hint: "0 = no limit" },
  { key: "retry", label: "Retries", type: "int", hint: "runs again after an error" },
  { key: "dir", label: "Directory", mono: true },
  { key: "affinity", label: "Affinity", hint: "comma-separated tags: linux,gpu" },
  { key: "dependencies", label: "Dependencies", type: "deps", hint: "job ids: 12, 15" },
  { key: "user", label: "User" },
  { key: "url", label: "URL", hint: "the “Open” link" },
  { key: "environment", label: "Environment", type: "env", mono: true, hint: "one KEY=VALUE per line" },
  // Resource requests (docs/scheduling.md): 0 = no request; children inherit them.
  { key: "cores", label: "Cores", type: "int", hint: "CPU cores a run needs (0 = none asked)" },
  { key: "memory", label: "Memory (MB)", type: "int", hint: "0 = none asked" },
  { key: "gpus", label: "GPUs", type: "int", hint: "pinned to the run" },
  { key: "exclusive", label: "Whole host", type: "bool", hint: "1 = the run takes a whole host" },
  // Failure handling (docs/failures.md): 0 takes the farm's setting, -1 turns it off.
  { key: "stalltimeout", label: "Stall timeout (s)", type: "sint", hint: "no output this long: killed (0 = farm's, -1 = off)" },
  { key: "minruntime", label: "Min run time (s)", type: "sint", hint: "exit 0 sooner is a failure (0 = farm's)" },
  { key: "hostfails", label: "Host failures", type: "sint", hint: "failed runs before a host is blocked (0 = farm's, -1 = never)" },
  { key: "logrules", label: "Log rules", type: "textarea", mono: true, hint: "NAME ACTION REGEX per line, or @nuke, @arnold…" },
];

const MIXED = Symbol("mixed");
const MAX_FRESH = 100; // selections up to this size are re-read (with dependencies) before editing
const ADD_KEEP = ["dir", "priority", "retry", "timeout", "affinity", "user", "url", "environment", "progress_pattern"];

function toText(field, job) {
  const v = job[field.key];
  switch (field.type) {
    case "int":
    case "sint":
      return v === undefined || v === null ? "" : String(v);
    case "bool":
      return v ? "1" : "0";
    case "deps":
      return Array.isArray(v) ? v.join(", ") : "";
    case "env":
      return envToLines(v);
    default:
      return v === undefined || v === null ? "" : String(v);
  }
}

function fromText(field, text) {
  switch (field.type) {
    case "int": {
      const t = text.trim();
      if (!/^\d+$/.test(t)) throw new Error(`${field.label} must be a whole number ≥ 0`);
      return Number(t);
    }
    case "sint": {
      const t = text.trim();
      if (!/^-?\d+$/.test(t) || Number(t) < -1) throw new Error(`${field.label} must be a whole number ≥ -1`);
      return Number(t);
    }
    case "deps":
      return parseIdList(text);
    case "env":
      return linesToEnv(text);
    case "bool": {
      const t = text.trim().toLowerCase();
      if (!["0", "1", "yes", "no", "true", "false"].includes(t)) throw new Error(`${field.label} must be 1 or 0`);
      return ["1", "yes", "true"].includes(t);
    }
    default:
      return text;
  }
}

function control(field, attrs = {}) {
  const common = { class: field.mono ? "mono" : "", spellcheck: "false", autocomplete: "off", ...attrs };
  if (field.type === "textarea" || field.type === "env") return h("textarea", { rows: field.type === "env" ? 3 : 2, ...common });
  return h("input", { type: "text", inputmode: field.type === "int" || field.type === "sint" ? "numeric" : null, ...common });
}

export class JobPanel {
  constructor(view) {
    this.view = view;
    this.tab = "";
    this.original = new Map(); // key -> common text, or MIXED
    this.touched = new Set();
    this.jobs = [];
    this.loadSeq = 0;
    this.reload = debounce(() => this.loadSelection(), 120);
  }

  element() {
    this.tabs = {
      edit: h("button", { role: "tab", class: "tab", text: "Edit selected", dataset: { needs: "edit" }, onclick: () => this.open("edit") }),
      add: h("button", { role: "tab", class: "tab", text: "Add job", dataset: { needs: "create" }, onclick: () => this.open("add") }),
      frames: h("button", { role: "tab", class: "tab", text: "Frames", title: "Frame times, memory and time left of the selected job (f)", onclick: () => this.open("frames") }),
      openjd: h("button", { role: "tab", class: "tab", text: "OpenJD", dataset: { needs: "create" }, title: "Submit an Open Job Description job template (o)", onclick: () => this.open("openjd") }),
    };
    this.bodyEl = h("div", { class: "panel-body" });
    this.el = h("aside", { class: "panel", hidden: true, "aria-label": "Job editor" },
      h("div", { class: "panel-head", role: "tablist" }, this.tabs.edit, this.tabs.add, this.tabs.frames, this.tabs.openjd,
        h("span", { class: "spacer" }),
        h("button", { class: "btn icon", title: "Close (Esc)", "aria-label": "Close the panel", text: "×", onclick: () => this.close() })),
      this.bodyEl);
    this.el.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        if (this.tab === "edit") this.submitEdit();
        else if (this.tab === "openjd") this.openjd.submit();
        else this.submitAdd();
      } else if (e.key === "Escape") {
        e.preventDefault();
        e.stopPropagation();
        this.close();
        this.view.tableWrap.focus();
      }
    });
    if (this.tab) this.open(this.tab, { focus: false });
    return this.el;
  }

  detach() {
    this.loadSeq++;
    this.stopFrames();
  }

  isOpen() {
    return Boolean(this.tab);
  }

  open(tab, { focus = true } = {}) {
    this.tab = tab;
    this.view.prefs.panel = tab;
    this.view.savePrefs();
    this.el.hidden = false;
    for (const [name, el] of Object.entries(this.tabs)) {
      el.classList.toggle("active", name === tab);
      el.setAttribute("aria-selected", String(name === tab));
    }
    this.stopFrames();
    if (tab === "edit") this.buildEdit();
    else if (tab === "frames") this.buildFrames();
    else if (tab === "openjd") {
      this.openjd = new OpenJDForm(this.view);
      this.openjd.build(this.bodyEl);
    } else this.buildAdd();
    if (focus) this.bodyEl.querySelector("input, textarea")?.focus();
  }

  close() {
    this.stopFrames();
    this.tab = "";
    this.view.prefs.panel = "";
    this.view.savePrefs();
    this.el.hidden = true;
  }

  selectionChanged() {
    if (this.tab === "edit") this.reload();
    if (this.tab === "frames") this.loadFrames();
  }

  // ---- frames: figures of the selected job, refreshed while the tab is open ------------------

  buildFrames() {
    this.framesEl = h("div", { class: "panel-form frames-panel" });
    fill(this.bodyEl, this.framesEl);
    this.loadFrames();
    this.framesTimer = setInterval(() => this.loadFrames(), 5000);
  }

  stopFrames() {
    if (this.framesTimer) clearInterval(this.framesTimer);
    this.framesTimer = null;
  }

  async loadFrames() {
    if (this.tab !== "frames" || !this.framesEl) return;
    const seq = ++this.loadSeq;
    const el = h("div");
    await guarded(() => fillFrames(el, this.view.selection.list()));
    if (seq === this.loadSeq && this.tab === "frames") fill(this.framesEl, ...el.childNodes);
  }

  // ---- edit ---------------------------------------------------------------------------------

  buildEdit() {
    this.summary = h("div", { class: "panel-summary" });
    this.failures = h("div", { class: "panel-failures" });
    this.inputs = new Map();
    const rows = EDIT_FIELDS.map((field) => {
      // Disabled until the selection is loaded: typing into a form the load then fills would
      // be lost (fillEdit keeps typing only over a reload of the same selection).
      const input = control(field, { name: field.key, disabled: true });
      input.addEventListener("input", () => {
        this.touched.add(field.key);
        this.mark(field);
      });
      this.inputs.set(field.key, input);
      return h("label", { class: "field", dataset: { field: field.key } },
        h("span", { class: "field-label", text: field.label }), input,
        field.hint ? h("span", { class: "field-hint", text: field.hint }) : null);
    });
    this.updateBtn = h("button", { class: "btn primary", type: "submit", text: "Update", title: "Send the changed fields (Ctrl+Enter)" });
    this.revertBtn = h("button", { class: "btn", type: "button", text: "Revert", onclick: () => this.fillEdit() });
    this.changedNote = h("span", { class: "muted changed-note" });
    const form = h("form", { class: "panel-form edit-form", autocomplete: "off" }, this.summary, this.failures, rows,
      h("div", { class: "panel-actions" }, this.updateBtn, this.revertBtn, this.changedNote));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submitEdit();
    });
    fill(this.bodyEl, form);
    this.loadSelection();
  }

  async loadSelection() {
    if (this.tab !== "edit") return;
    const seq = ++this.loadSeq;
    const ids = this.view.selection.list();
    let jobs = ids.map((id) => this.view.known.get(id)).filter(Boolean);
    this.depsKnown = false;
    if (ids.length && ids.length <= MAX_FRESH) {
      const fresh = await guarded(() => API.pool(ids, 8, (id) => API.get(`/api/jobs/${id}`)));
      if (seq !== this.loadSeq) return;
      if (fresh) {
        jobs = fresh;
        this.depsKnown = jobs.every((j) => Array.isArray(j.dependencies));
      }
    }
    // A reload of the same selection (a second click, the debounced selection change racing the
    // tab's own load, a refresh) must not wipe what the user has typed meanwhile.
    const same = jobs.length === this.jobs.length && jobs.every((j, i) => j.id === this.jobs[i].id);
    const typed = same ? new Map([...this.touched].map((key) => [key, this.inputs.get(key).value])) : new Map();
    this.jobs = jobs;
    this.fillEdit(typed);
  }

  // typed: field key -> text the user entered, kept over the loaded values.
  fillEdit(typed = new Map()) {
    this.touched.clear();
    this.original.clear();
    const jobs = this.jobs;
    const n = jobs.length;
    clear(this.summary);
    if (!n) {
      this.summary.append(h("p", { class: "muted", text: "Select jobs in the table to edit them together. Fields whose values differ between the selected jobs are marked; only the fields you change are sent." }));
    } else if (n === 1) {
      this.summary.append(h("strong", { text: `Job ${jobs[0].id}` }), " ", h("span", { class: "muted", text: jobs[0].title || "" }));
    } else {
      this.summary.append(h("strong", { text: `${fmtCount(n)} jobs` }), " ",
        h("span", { class: "muted", text: "orange fields differ between them" }));
    }
    for (const field of EDIT_FIELDS) {
      const input = this.inputs.get(field.key);
      let value = "";
      let mixed = false;
      if (n) {
        const texts = jobs.map((j) => toText(field, j));
        value = texts[0];
        mixed = texts.some((t) => t !== value);
      }
      const depsUnknown = field.type === "deps" && n && !this.depsKnown;
      this.original.set(field.key, mixed ? MIXED : value);
      input.value = mixed ? "" : value;
      input.placeholder = mixed ? "(different values)" : depsUnknown ? "(not loaded for this many jobs)" : "";
      input.disabled = !n || depsUnknown;
      if (typed.has(field.key) && !input.disabled) {
        input.value = typed.get(field.key);
        this.touched.add(field.key);
      }
    }
    this.updateBtn.disabled = true;
    this.changedNote.textContent = "";
    for (const field of EDIT_FIELDS) this.mark(field);
    this.showFailures(n === 1 ? jobs[0] : null);
  }

  // Why a waiting job does not run (GET /api/jobs/ID/why), the last run's reason and the
  // hosts blocked from the job, each with a Lift button.
  async showFailures(job) {
    clear(this.failures);
    if (!job) return;
    const seq = this.loadSeq;
    if (["WAITING", "PENDING", "PAUSED"].includes(job.state) && !job.children) {
      const why = await guarded(() => API.get(`/api/jobs/${job.id}/why`));
      if (seq !== this.loadSeq) return;
      const reasons = why && Array.isArray(why.reasons) ? why.reasons : [];
      if (reasons.length) {
        this.failures.append(h("div", { class: "why", role: "group", "aria-label": "Why it waits" },
          h("span", { class: "field-label", text: "Why it waits" }),
          h("ul", {}, reasons.map((r) => h("li", { dataset: { kind: r.kind || "" }, text: r.text })))));
      }
    }
    if (job.reason) {
      this.failures.append(h("p", { class: "last-reason" }, h("span", { class: "muted", text: "Last run: " }), h("span", { class: "reason", text: job.reason })));
    }
    const blocks = await guarded(() => API.get(`/api/jobs/${job.id}/blocks`));
    if (!blocks || !blocks.length || seq !== this.loadSeq) return;
    const lift = async (worker) => {
      const done = await guarded(() => API.del(`/api/jobs/${job.id}/blocks`, worker ? [worker] : undefined));
      if (done === undefined) return;
      notify.ok(`Lifted ${done.lifted} block${done.lifted === 1 ? "" : "s"} of job ${job.id}`);
      this.showFailures(job);
    };
    const items = blocks.map((b) => h("li", { dataset: { worker: b.worker } },
      h("strong", { text: b.worker }),
      h("span", { class: "muted", text: ` ${b.failures} failed run${b.failures === 1 ? "" : "s"}${b.job_id !== job.id ? ` in group ${b.job_id}` : ""}: ` }),
      h("span", { class: "reason", text: b.reason }), " ",
      b.job_id === job.id ? h("button", { class: "btn small", type: "button", text: "Lift", title: `Let ${b.worker} take this job again`, onclick: () => lift(b.worker) }) : null));
    this.failures.append(h("div", { class: "blocks", role: "group", "aria-label": "Blocked hosts" },
      h("span", { class: "field-label", text: "Blocked hosts" }), h("ul", {}, items)));
  }

  changedFields() {
    const out = [];
    for (const field of EDIT_FIELDS) {
      const input = this.inputs.get(field.key);
      const orig = this.original.get(field.key);
      if (input.disabled) continue;
      if (orig === MIXED ? this.touched.has(field.key) : input.value !== orig) out.push(field);
    }
    return out;
  }

  mark(field) {
    const input = this.inputs.get(field.key);
    const label = input.closest(".field");
    const orig = this.original.get(field.key);
    const changed = orig === MIXED ? this.touched.has(field.key) : input.value !== orig;
    label.classList.toggle("changed", changed);
    label.classList.toggle("mixed", orig === MIXED && !changed);
    if (this.updateBtn) {
      const n = this.changedFields().length;
      this.updateBtn.disabled = n === 0 || !this.jobs.length;
      this.changedNote.textContent = n ? `${n} field${n > 1 ? "s" : ""} changed` : "";
    }
  }

  async submitEdit() {
    const fields = this.changedFields();
    if (!fields.length || !this.jobs.length) return;
    const values = {};
    try {
      for (const field of fields) values[field.key] = fromText(field, this.inputs.get(field.key).value);
    } catch (err) {
      notify.error(err);
      return;
    }
    const body = Object.fromEntries(this.jobs.map((j) => [j.id, values]));
    const done = await guarded(() => API.post("/api/jobs", body));
    if (done === undefined) return;
    const n = this.jobs.length;
    notify.ok(`Updated ${fields.map((f) => f.label.toLowerCase()).join(", ")} on ${n} job${n > 1 ? "s" : ""}`);
    this.touched.clear(); // sent: the reload below shows the stored values
    await this.view.load();
    await this.loadSelection();
  }

  // ---- add ----------------------------------------------------------------------------------

  buildAdd() {
    const keep = prefs.load("jobs.add", {});
    const mk = (key, label, attrs = {}, hint = null, kind = "text") => {
      const el = kind === "textarea"
        ? h("textarea", { name: key, rows: 2, spellcheck: "false", ...attrs })
        : h("input", { name: key, type: "text", spellcheck: "false", autocomplete: "off", ...attrs });
      if (keep[key] !== undefined && ADD_KEEP.includes(key)) el.value = keep[key];
      return { key, el, row: h("label", { class: "field", dataset: { field: key } }, h("span", { class: "field-label", text: label }), el,
        hint ? h("span", { class: "field-hint", text: hint }) : null) };
    };
    const f = {
      title: mk("title", "Title", { placeholder: "e.g. shot 12 comp" }),
      command: mk("command", "Command", { class: "mono", placeholder: "render -f {frame} scene.ma" }, "leave empty to create a group", "textarea"),
      dir: mk("dir", "Directory", { class: "mono", placeholder: "." }),
      priority: mk("priority", "Priority", { inputmode: "numeric", placeholder: "1000" }),
      retry: mk("retry", "Retries", { inputmode: "numeric", placeholder: "server default" }),
      timeout: mk("timeout", "Timeout (s)", { inputmode: "numeric", placeholder: "0 = no limit" }),
      affinity: mk("affinity", "Affinity", { placeholder: "linux,gpu" }),
      user: mk("user", "User"),
      url: mk("url", "URL", { placeholder: "https://…/frame.png" }),
      environment: mk("environment", "Environment", { class: "mono", rows: 2, placeholder: "KEY=VALUE per line" }, null, "textarea"),
      dependencies: mk("dependencies", "Dependencies", { placeholder: "job ids: 12, 15" }),
      progress_pattern: mk("progress_pattern", "Progress pattern", { class: "mono", placeholder: "PROGRESS:%percent" }),
      first: mk("first", "First", { inputmode: "numeric", placeholder: "1" }),
      last: mk("last", "Last", { inputmode: "numeric", placeholder: "100" }),
      step: mk("step", "Step", { inputmode: "numeric", placeholder: "1" }),
      packet: mk("packet", "Per job", { inputmode: "numeric", placeholder: "1" }),
    };
    this.addFields = f;
    this.pausedBox = h("input", { type: "checkbox", name: "paused" });
    const where = this.view.titles.get(this.view.parent) || (this.view.parent ? `job ${this.view.parent}` : "the root");
    const half = (a, b) => h("div", { class: "field-pair" }, a.row, b.row);
    const frames = h("fieldset", { class: "frames" },
      h("legend", { text: "Frame range (optional)" }),
      h("div", { class: "field-quad" }, f.first.row, f.last.row, f.step.row, f.packet.row),
      h("p", { class: "field-hint", text: "Creates a group with one job per frame (or per packet). {frame}, {start} and {end} in the title and command are replaced; {frame:4} pads to 4 digits." }));
    this.addBtn = h("button", { class: "btn primary", type: "submit", text: "Add", title: "Add (Ctrl+Enter)" });
    const form = h("form", { class: "panel-form add-form", autocomplete: "off" },
      h("div", { class: "panel-summary" }, h("span", { class: "muted", text: "Into " }), h("strong", { text: where })),
      f.title.row, f.command.row, f.dir.row,
      half(f.priority, f.retry), half(f.timeout, f.affinity), half(f.user, f.dependencies),
      f.url.row, f.environment.row, f.progress_pattern.row, frames,
      h("label", { class: "check-row" }, this.pausedBox, h("span", { text: "Submit paused" })),
      h("div", { class: "panel-actions" }, this.addBtn));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.submitAdd();
    });
    fill(this.bodyEl, form);
  }

  addValues() {
    const v = Object.fromEntries(Object.entries(this.addFields).map(([k, o]) => [k, o.el.value]));
    const spec = { parent: this.view.parent, title: v.title.trim(), command: v.command.trim() };
    if (v.dir.trim()) spec.dir = v.dir.trim();
    for (const key of ["priority", "retry", "timeout"]) {
      const t = v[key].trim();
      if (!t) continue;
      if (!/^\d+$/.test(t)) throw new Error(`${key} must be a whole number ≥ 0`);
      spec[key] = Number(t);
    }
    for (const key of ["affinity", "user", "url", "progress_pattern"]) if (v[key].trim()) spec[key] = v[key].trim();
    if (v.environment.trim()) spec.environment = linesToEnv(v.environment);
    const deps = parseIdList(v.dependencies);
    if (deps.length) spec.dependencies = deps;
    if (this.pausedBox.checked) spec.paused = true;
    let frames = null;
    if (v.first.trim() || v.last.trim()) {
      const num = (t, d, name) => {
        const s = t.trim();
        if (!s) return d;
        if (!/^-?\d+$/.test(s)) throw new Error(`frame ${name} must be a whole number`);
        return Number(s);
      };
      const first = num(v.first, null, "first");
      const last = num(v.last, first, "last");
      const step = num(v.step, 1, "step");
      const packet = num(v.packet, 1, "per job");
      if (first === null) throw new Error("give the first frame of the range");
      if (step < 1 || packet < 1) throw new Error("step and frames per job must be at least 1");
      if (last < first) throw new Error("the last frame comes before the first");
      frames = { first, last, step, packet };
    }
    return { spec, frames, raw: v };
  }

  async submitAdd() {
    let values;
    try {
      values = this.addValues();
    } catch (err) {
      notify.error(err);
      return;
    }
    const { spec, frames, raw } = values;
    prefs.save("jobs.add", Object.fromEntries(ADD_KEEP.map((k) => [k, raw[k]])));
    this.addBtn.disabled = true;
    try {
      if (!frames) {
        const id = await guarded(() => API.put("/api/jobs", spec));
        if (id === undefined) return;
        notify.ok(`Added job ${id}${spec.title ? ` “${spec.title}”` : ""}`);
        this.afterAdd([Number(id)]);
      } else {
        await this.addRange(spec, frames);
      }
    } finally {
      this.addBtn.disabled = false;
    }
  }

  async addRange(spec, { first, last, step, packet }) {
    const chunks = [];
    let frame = first;
    while (frame <= last) {
      const frs = [];
      for (let i = 0; i < packet && frame <= last; i++, frame += step) frs.push(frame);
      chunks.push({ start: frs[0], end: frs[frs.length - 1] });
    }
    if (chunks.length > 20000) {
      notify.error(`That range makes ${chunks.length} jobs; split it (at most 20,000 at once).`);
      return;
    }
    const sub = (text, c) => text.replace(/\{(frame|start|end)(?::(\d+))?\}/g, (_, name, width) => {
      const n = name === "end" ? c.end : c.start;
      return width ? String(n).padStart(Number(width), "0") : String(n);
    });
    const hasPlaceholder = /\{(frame|start|end)(?::\d+)?\}/;
    const base = spec.title.replace(/\{(frame|start|end)(?::\d+)?\}/g, "").replace(/\s+/g, " ").trim();
    const group = {
      ...spec,
      title: base || `frames ${first}-${last}`,
      command: "",
      paused: true, // held until every frame is in, so no worker runs the half-built group
    };
    delete group.progress_pattern;
    const gid = await guarded(() => API.put("/api/jobs", group));
    if (gid === undefined) return;
    const child = { dir: spec.dir, progress_pattern: spec.progress_pattern, environment: spec.environment, retry: spec.retry, timeout: spec.timeout, user: spec.user, url: spec.url };
    for (const k of Object.keys(child)) if (child[k] === undefined) delete child[k];
    const note = notify.info(`Adding ${chunks.length} jobs into group ${gid}…`);
    const specs = chunks.map((c) => ({
      ...child,
      parent: Number(gid),
      title: hasPlaceholder.test(spec.title) ? sub(spec.title, c)
        : `${base || "frame"} ${c.start === c.end ? c.start : `${c.start}-${c.end}`}`,
      command: sub(spec.command, c),
    }));
    let failed = null;
    // PUT /api/jobs takes a list: one request (one transaction) per thousand jobs.
    for (let i = 0; i < specs.length && !failed; i += 1000) {
      try {
        await API.put("/api/jobs", specs.slice(i, i + 1000));
      } catch (err) {
        failed = err;
      }
    }
    note.remove();
    if (!spec.paused) await guarded(() => API.post("/api/startjobs", [Number(gid)]));
    if (failed) notify.error(failed);
    else notify.ok(`Added group ${gid} with ${chunks.length} job${chunks.length > 1 ? "s" : ""}`);
    this.afterAdd([Number(gid)]);
  }

  async afterAdd(ids) {
    this.addFields.title.el.value = "";
    this.addFields.title.el.focus();
    await this.view.load();
    if (this.view.parent) this.view.refreshGroup();
    const visible = ids.filter((id) => this.view.byId.has(id));
    if (visible.length) this.view.selection.set(visible, { anchor: visible[0], cursor: visible[0] });
  }
}
