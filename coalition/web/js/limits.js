// Limits: the farm-wide counters (licences, shared resources) jobs need while they run
// (GET/POST /api/limits, DELETE /api/limits/<name>): each one's capacity, use and room.

import * as API from "./api.js";
import { h, fill } from "./dom.js";
import { notify, guarded } from "./ui.js";

export class LimitsView {
  constructor(app) {
    this.app = app;
    this.seq = 0;
  }

  mount(root) {
    this.root = root;
    this.tbody = h("tbody");
    this.name = h("input", { type: "text", placeholder: "name (e.g. nuke)", "aria-label": "New limit name", spellcheck: "false" });
    this.capacity = h("input", { type: "number", min: "0", value: "1", "aria-label": "New limit capacity" });
    const form = h("form", { class: "aff-form", autocomplete: "off" },
      h("p", { class: "muted", text: "A job that needs a limit (its Limits column, e.g. nuke:1) starts only while the limit has room: what running jobs hold plus what its counting command found in use outside the farm stays within its capacity." }),
      h("table", { class: "grid limits-table" },
        h("thead", {}, h("tr", {}, ...["Name", "Capacity", "In use", "Outside", "Free", ""].map((t) => h("th", { text: t })))),
        this.tbody),
      h("div", { class: "panel-actions", dataset: { needs: "workers" } },
        this.name, this.capacity, h("button", { class: "btn primary", type: "submit", text: "Set" })));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      this.save(this.name.value.trim(), Number(this.capacity.value));
    });
    fill(root, h("section", { class: "view limits-view" },
      h("div", { class: "viewbar" }, h("h1", { text: "Limits" })),
      h("div", { class: "padded" }, form)));
    this.load();
  }

  unmount() {
    this.seq++;
  }

  refresh() {
    if (this.root && this.root.contains(document.activeElement) && document.activeElement.tagName === "INPUT") return undefined;
    return this.load();
  }

  async load() {
    const seq = ++this.seq;
    try {
      const rows = await API.get("/api/limits");
      if (seq !== this.seq) return;
      this.render(Array.isArray(rows) ? rows : []);
      this.app.markUpdated();
    } catch (err) {
      if (seq === this.seq) notify.error(err);
    }
  }

  render(rows) {
    this.tbody.replaceChildren();
    if (!rows.length) {
      this.tbody.append(h("tr", {}, h("td", { colspan: "6", class: "muted", text: "No limits yet: add one below, or in [limits] of coalition.ini." })));
    }
    for (const r of rows) {
      const cap = h("input", { type: "number", min: "0", value: String(r.capacity), "aria-label": `Capacity of ${r.name}` });
      cap.addEventListener("change", () => this.save(r.name, Number(cap.value)));
      const full = r.free === 0;
      this.tbody.append(h("tr", { dataset: { limit: r.name }, class: full ? "is-full" : "" },
        h("td", { class: "mono", text: r.name }),
        h("td", {}, cap),
        h("td", { class: "num", text: String(r.in_use) }),
        h("td", { class: "num", text: String(r.external + (r.lowered || 0)), title: `${r.counted_by_command ? "counted by the limit's command" : "no counting command"}${r.lowered ? `; ${r.lowered} refused by the licence server (a log rule)` : ""}` }),
        h("td", { class: "num", text: `${r.free}${full ? " (full)" : ""}` }),
        h("td", {}, h("button", { class: "btn", type: "button", text: "Delete", dataset: { needs: "workers" }, onclick: () => this.remove(r.name) }))));
    }
  }

  async save(name, capacity) {
    if (!name) return;
    const done = await guarded(() => API.post("/api/limits", { [name]: capacity }));
    if (done === undefined) return;
    notify.ok(`Limit ${name}: ${capacity}`);
    this.name.value = "";
    this.load();
  }

  async remove(name) {
    const done = await guarded(() => API.del(`/api/limits/${encodeURIComponent(name)}`));
    if (done === undefined) return;
    notify.ok(`Deleted limit ${name}`);
    this.load();
  }

  onKey() {
    return false;
  }
}
