// Affinities: the numbered registry of affinity names (GET/POST /api/affinities), with the
// number of workers whose rules offer each name.

import * as API from "./api.js";
import { h, clear, fill } from "./dom.js";
import { notify, guarded } from "./ui.js";

export class AffinitiesView {
  constructor(app) {
    this.app = app;
    this.seq = 0;
  }

  mount(root) {
    this.root = root;
    this.list = h("div", { class: "aff-list" });
    this.saveBtn = h("button", { class: "btn primary", type: "submit", text: "Update", disabled: true, title: "Save the changed names (Ctrl+Enter)" });
    this.changedNote = h("span", { class: "muted" });
    const form = h("form", { class: "aff-form", autocomplete: "off" },
      h("p", { class: "muted", text: "Affinities are tags: a job runs only on a worker whose rules offer all of its tags (its own and its parents'). This registry names the known tags; changed names turn green until you update." }),
      this.list,
      h("div", { class: "panel-actions", dataset: { needs: "workers" } },
        h("button", { class: "btn", type: "button", text: "+ Add a name", onclick: () => this.addRow() }),
        this.saveBtn, this.changedNote));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.save();
    });
    form.addEventListener("keydown", (e) => {
      if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) {
        e.preventDefault();
        this.save();
      }
    });
    fill(root, h("section", { class: "view affinities-view" },
      h("div", { class: "viewbar" }, h("h1", { text: "Affinities" })),
      h("div", { class: "padded" }, form)));
    this.load();
  }

  unmount() {
    this.seq++;
  }

  refresh() {
    if (!this.dirty()) return this.load();
    return undefined;
  }

  async load() {
    const seq = ++this.seq;
    try {
      const [reg, workers] = await Promise.all([API.get("/api/affinities"), API.get("/api/workers").catch(() => [])]);
      if (seq !== this.seq) return;
      this.original = new Map(Object.entries(reg || {}).map(([k, v]) => [Number(k), String(v ?? "")]));
      this.usage = new Map();
      for (const w of Array.isArray(workers) ? workers : []) {
        const tags = new Set(String(w.affinity || "").split(/[\n,]/).map((t) => t.trim()).filter(Boolean));
        for (const t of tags) this.usage.set(t, (this.usage.get(t) || 0) + 1);
      }
      this.render();
      this.app.markUpdated();
    } catch (err) {
      if (seq === this.seq) notify.error(err);
    }
  }

  render() {
    clear(this.list);
    this.rows = new Map();
    const nums = [...this.original.keys()].sort((a, b) => a - b);
    for (const n of nums) this.addRow(n, this.original.get(n));
    if (!nums.length) this.addRow();
    this.mark();
  }

  addRow(n, value = "") {
    if (n === undefined) {
      const used = [...this.rows.keys()];
      n = used.length ? Math.max(...used) + 1 : 1;
      for (let i = 1; i <= used.length + 1; i++) {
        if (!this.rows.has(i) && !this.original.get(i)) {
          n = i;
          break;
        }
      }
    }
    const input = h("input", { type: "text", value, "aria-label": `Affinity ${n}`, spellcheck: "false", dataset: { n: String(n) } });
    const usage = h("span", { class: "aff-usage muted" });
    input.addEventListener("input", () => this.mark());
    const row = h("label", { class: "aff-row" }, h("span", { class: "aff-n", text: String(n) }), input, usage);
    this.rows.set(n, { input, usage, row });
    const after = [...this.list.children].find((el) => Number(el.querySelector("input").dataset.n) > n);
    this.list.insertBefore(row, after || null);
    this.mark();
    if (!value && this.original.size) input.focus();
  }

  dirty() {
    if (!this.rows) return false;
    for (const [n, { input }] of this.rows) if (input.value.trim() !== (this.original.get(n) || "")) return true;
    return false;
  }

  mark() {
    let changed = 0;
    for (const [n, { input, usage, row }] of this.rows) {
      const isChanged = input.value.trim() !== (this.original.get(n) || "");
      row.classList.toggle("changed", isChanged);
      if (isChanged) changed++;
      const name = input.value.trim();
      const count = name ? this.usage.get(name) || 0 : 0;
      usage.textContent = name ? `${count} worker${count === 1 ? "" : "s"}` : "";
    }
    this.saveBtn.disabled = !changed;
    this.changedNote.textContent = changed ? `${changed} changed` : "";
  }

  async save() {
    const body = {};
    for (const [n, { input }] of this.rows) {
      const v = input.value.trim();
      if (v !== (this.original.get(n) || "")) body[String(n)] = v;
    }
    if (!Object.keys(body).length) return;
    const done = await guarded(() => API.post("/api/affinities", body));
    if (done === undefined) return;
    notify.ok(`Saved ${Object.keys(body).length} affinit${Object.keys(body).length > 1 ? "ies" : "y"}`);
    this.load();
  }

  onKey() {
    return false;
  }
}
