// The "OpenJD" tab of the jobs panel: submit an Open Job Description job template into the
// current group (docs/openjd.md). The template (a file, or pasted text) goes to
// POST /api/webfrontend/openjd/check, which answers its parameter definitions; each becomes a
// field of the kind its userInterface asks for (a line, a text box, a spin box with its
// bounds, a drop-down of its allowed values, a check box; HIDDEN ones are left to their
// defaults), grouped by groupLabel, prefilled with its default. The same check, with the
// values, previews the job (steps, tasks, what is not enforced) and says what is missing or
// wrong before anything is submitted; problems in the template name their line.

import * as API from "./api.js";
import { h, fill, debounce } from "./dom.js";
import { notify } from "./ui.js";

const CHECK = "/api/openjd/check";
const SUBMIT = "/api/openjd";

function label(def) {
  return (def.userInterface && def.userInterface.label) || def.name;
}

function controlOf(def) {
  const ui = def.userInterface || {};
  const kind = ui.control || "";
  const type = String(def.type || "STRING");
  const allowed = Array.isArray(def.allowedValues) ? def.allowedValues : null;
  const initial = def.default === undefined || def.default === null ? "" : String(def.default);
  const common = { name: def.name, "data-param": def.name, spellcheck: "false", autocomplete: "off" };
  if (kind === "CHECK_BOX") {
    const truthy = allowed ? allowed.find((v) => /^(true|yes|on|1)$/i.test(String(v))) : "true";
    const falsy = allowed ? allowed.find((v) => /^(false|no|off|0)$/i.test(String(v))) : "false";
    const box = h("input", { type: "checkbox", ...common, checked: String(initial) === String(truthy) });
    return { el: box, value: () => String(box.checked ? truthy : falsy) };
  }
  if (allowed && (kind === "DROPDOWN_LIST" || kind === "")) {
    const select = h("select", common, allowed.map((v) => h("option", { value: String(v), text: String(v),
      selected: String(v) === initial })));
    return { el: select, value: () => select.value };
  }
  if (kind === "MULTILINE_EDIT") {
    const area = h("textarea", { rows: 3, ...common, value: initial });
    return { el: area, value: () => area.value };
  }
  if ((type === "INT" || type === "FLOAT") && kind !== "LINE_EDIT") {
    const step = ui.singleStepDelta !== undefined ? ui.singleStepDelta
      : type === "INT" ? 1 : ui.decimals !== undefined ? 10 ** -ui.decimals : "any";
    const input = h("input", { type: "number", inputmode: type === "INT" ? "numeric" : "decimal", ...common,
      min: def.minValue, max: def.maxValue, step: String(step), value: initial });
    return { el: input, value: () => input.value };
  }
  const hint = type === "PATH" ? (kind === "CHOOSE_DIRECTORY" ? "a folder" : "a file") : null;
  const input = h("input", { type: "text", ...common, class: type === "PATH" ? "mono" : "",
    placeholder: hint ? `${hint} the workers can reach (or map)` : null, value: initial });
  return { el: input, value: () => input.value };
}

export class OpenJDForm {
  constructor(view) {
    this.view = view;
    this.fields = new Map(); // parameter name -> {def, value()}
    this.seq = 0;
    this.recheck = debounce(() => this.check(), 400);
  }

  build(body) {
    this.text = h("textarea", { name: "template", class: "mono", rows: 6, spellcheck: "false",
      placeholder: "specificationVersion: 'jobtemplate-2023-09'\nname: ...\nsteps: ..." });
    this.text.addEventListener("input", () => { this.fields.clear(); this.recheck(); });
    const file = h("input", { type: "file", name: "template-file", accept: ".yaml,.yml,.json,application/json,text/yaml" });
    file.addEventListener("change", async () => {
      const chosen = file.files && file.files[0];
      if (!chosen) return;
      this.text.value = await chosen.text();
      this.fields.clear();
      this.check();
    });
    this.title = h("input", { type: "text", name: "title", autocomplete: "off" });
    this.priority = h("input", { type: "text", name: "priority", inputmode: "numeric", placeholder: "1000" });
    this.paused = h("input", { type: "checkbox", name: "paused" });
    this.params = h("div", { class: "openjd-params" });
    this.preview = h("div", { class: "openjd-preview", "aria-live": "polite" });
    this.submitBtn = h("button", { class: "btn primary", type: "submit", text: "Submit", disabled: true,
      title: "Submit the job (Ctrl+Enter)" });
    const where = this.view.titles.get(this.view.parent) || (this.view.parent ? `job ${this.view.parent}` : "the root");
    // novalidate: a spin box's step is the template's singleStepDelta, an increment and not a
    // constraint (123 with a step of 30 is a good value); the server checks the values.
    const form = h("form", { class: "panel-form openjd-form", autocomplete: "off", novalidate: true },
      h("div", { class: "panel-summary" }, h("span", { class: "muted", text: "Open Job Description template into " }),
        h("strong", { text: where })),
      h("label", { class: "field" }, h("span", { class: "field-label", text: "Template file" }), file),
      h("label", { class: "field" }, h("span", { class: "field-label", text: "Template (YAML or JSON)" }), this.text),
      this.params,
      h("div", { class: "field-pair" },
        h("label", { class: "field" }, h("span", { class: "field-label", text: "Title" }), this.title),
        h("label", { class: "field" }, h("span", { class: "field-label", text: "Priority" }), this.priority)),
      h("label", { class: "check-row" }, this.paused, h("span", { text: "Submit paused" })),
      this.preview,
      h("div", { class: "panel-actions" }, this.submitBtn));
    form.addEventListener("submit", (e) => { e.preventDefault(); this.submit(); });
    form.addEventListener("input", (e) => { if (e.target.dataset && e.target.dataset.param) this.recheck(); });
    form.addEventListener("change", (e) => { if (e.target.dataset && e.target.dataset.param) this.recheck(); });
    fill(body, form);
    this.form = form;
  }

  values() {
    // What the person set: the others take their defaults as the template writes them (a
    // number box would send 0.0 back as 0); an empty required field is left for the check to
    // name.
    const out = {};
    for (const [name, f] of this.fields) {
      if (f.hidden || !f.touched) continue;
      const value = f.value();
      if (value === "" && (f.def.default === undefined || f.def.default === null)) continue;
      out[name] = value;
    }
    return out;
  }

  request() {
    const body = { template: this.text.value, parameters: this.values() };
    if (this.title.value.trim()) body.title = this.title.value.trim();
    const prio = this.priority.value.trim();
    if (prio) {
      if (!/^\d+$/.test(prio)) throw new Error("priority must be a whole number ≥ 0");
      body.priority = Number(prio);
    }
    if (this.paused.checked) body.paused = true;
    if (this.view.parent) body.parent = this.view.parent;
    return body;
  }

  async check() {
    const seq = ++this.seq;
    if (!this.text.value.trim()) {
      fill(this.params);
      fill(this.preview);
      this.submitBtn.disabled = true;
      return;
    }
    let answer;
    try {
      answer = await API.post(CHECK, { template: this.text.value, parameters: this.fields.size ? this.values() : {} });
    } catch (err) {
      if (seq !== this.seq) return;
      fill(this.params);
      this.showProblems(err.message, err.data && err.data.problems);
      this.submitBtn.disabled = true;
      return;
    }
    if (seq !== this.seq) return;
    if (!this.fields.size) this.renderParams(answer.parameters || []);
    if (!this.title.value && answer.job) this.title.placeholder = answer.job.title;
    this.renderPreview(answer);
  }

  renderParams(defs) {
    this.fields.clear();
    const groups = new Map();
    for (const def of defs) {
      const ui = def.userInterface || {};
      const control = controlOf(def);
      const hidden = ui.control === "HIDDEN";
      const entry = { def, value: control.value, hidden, touched: false };
      this.fields.set(def.name, entry);
      if (hidden) continue;
      for (const kind of ["input", "change"]) control.el.addEventListener(kind, () => { entry.touched = true; });
      const required = def.default === undefined || def.default === null;
      const row = h("label", { class: `field${required ? " required" : ""}`, dataset: { field: def.name } },
        h("span", { class: "field-label", text: label(def) + (required ? " *" : "") }), control.el,
        def.description ? h("span", { class: "field-hint", text: String(def.description).trim() }) : null);
      const group = ui.groupLabel || "";
      if (!groups.has(group)) groups.set(group, []);
      groups.get(group).push(row);
    }
    const parts = [];
    for (const [group, rows] of groups) {
      if (group) parts.push(h("fieldset", { class: "openjd-group" }, h("legend", { text: group }), rows));
      else parts.push(...rows);
    }
    fill(this.params, defs.length ? h("div", { class: "panel-title", text: "Parameters" }) : null, parts);
  }

  showProblems(message, problems) {
    const items = (problems || []).map((p) => h("li", {
      text: `${p.line ? `line ${p.line}: ` : ""}${p.field ? `${p.field}: ` : ""}${p.message}` }));
    fill(this.preview, h("div", { class: "openjd-problems" },
      h("p", { text: items.length ? message.split(":")[0] : message }), items.length ? h("ul", {}, items) : null));
  }

  renderPreview(answer) {
    if (!answer.job) {
      this.showProblems(answer.problem, answer.problems);
      this.submitBtn.disabled = true;
      return;
    }
    const steps = answer.job.steps.map((s) => h("li", { text: `${s.name}: ${s.tasks} task${s.tasks === 1 ? "" : "s"}`
      + (s.depends_on.length ? `, after ${s.depends_on.join(", ")}` : "")
      + (s.tags.length ? ` [${s.tags.join("; ")}]` : "") }));
    const notes = (answer.notes || []).map((n) => h("li", { class: "muted", text: n }));
    fill(this.preview, h("div", { class: "openjd-job" },
      h("p", { text: `${answer.job.title}: ${answer.job.tasks} task${answer.job.tasks === 1 ? "" : "s"}` }),
      h("ul", {}, steps), notes.length ? h("ul", { class: "openjd-notes" }, notes) : null));
    this.submitBtn.disabled = false;
  }

  async submit() {
    let body;
    try {
      body = this.request();
    } catch (err) {
      notify.error(err);
      return;
    }
    this.submitBtn.disabled = true;
    try {
      const answer = await API.post(SUBMIT, body);
      notify.ok(`Submitted OpenJD job ${answer.id} “${answer.title}”: ${answer.steps.length} step${answer.steps.length === 1 ? "" : "s"}, ${answer.tasks} task${answer.tasks === 1 ? "" : "s"}`);
      await this.view.load();
      if (this.view.byId.has(answer.id)) this.view.selection.set([answer.id], { anchor: answer.id, cursor: answer.id });
    } catch (err) {
      notify.error(err);
      if (err.data && err.data.problems) this.showProblems(err.message, err.data.problems);
    } finally {
      this.submitBtn.disabled = false;
    }
  }
}
