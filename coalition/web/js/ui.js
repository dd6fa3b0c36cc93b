// Shared widgets: notifications, the confirmation dialog, row selection, sortable headers.

import { h, clear } from "./dom.js";

// ---- notifications -----------------------------------------------------------------------

function toast(kind, message, timeout) {
  const box = document.getElementById("toasts");
  // The same message again (a refresh failing every few seconds): count it, do not stack it.
  for (const old of box.children) {
    if (old.dataset.kind === kind && old.dataset.message === message) {
      const n = Number(old.dataset.count || 1) + 1;
      old.dataset.count = String(n);
      old.querySelector(".toast-count").textContent = `×${n}`;
      box.append(old);
      return old;
    }
  }
  const close = h("button", { class: "toast-close", title: "Dismiss", "aria-label": "Dismiss", text: "×" });
  const el = h("div", { class: `toast toast-${kind}`, role: kind === "error" ? "alert" : "status", dataset: { kind, message } },
    h("span", { class: "toast-text", text: message }), h("span", { class: "toast-count" }), close);
  const remove = () => el.remove();
  close.addEventListener("click", remove);
  box.append(el);
  while (box.children.length > 6) box.firstChild.remove();
  if (timeout) setTimeout(remove, timeout);
  return el;
}

export const notify = {
  ok: (message) => toast("ok", message, 4000),
  info: (message) => toast("info", message, 4000),
  /** Errors stay until dismissed: the person must see what the server refused and why. */
  error: (err) => toast("error", err && err.message ? err.message : String(err), 0),
};

/** Run an action, reporting its error (never swallowing it). Returns the result or undefined. */
export async function guarded(fn) {
  try {
    return await fn();
  } catch (err) {
    if (err && err.name === "AbortError") return undefined;
    notify.error(err);
    return undefined;
  }
}

// ---- confirmation ------------------------------------------------------------------------

/** A modal confirmation; resolves true when confirmed (Enter or the button), false on Esc. */
export function confirmDialog(title, detail, okLabel = "OK", danger = false) {
  const dialog = document.getElementById("confirm");
  clear(dialog);
  const ok = h("button", { class: danger ? "btn danger" : "btn primary", value: "ok", text: okLabel });
  const cancel = h("button", { class: "btn", value: "cancel", text: "Cancel" });
  const form = h("form", { method: "dialog" },
    h("h2", { text: title }),
    detail ? h("p", { text: detail }) : null,
    h("div", { class: "dialog-buttons" }, cancel, ok));
  dialog.append(form);
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), { once: true });
    dialog.returnValue = "cancel";
    dialog.showModal();
    ok.focus();
  });
}

export function isDialogOpen() {
  return Boolean(document.querySelector("dialog[open]"));
}

// ---- selection ---------------------------------------------------------------------------

/**
 * Row selection with the usual desktop gestures: click selects one, ctrl/cmd-click toggles,
 * shift-click selects the range from the anchor (ctrl+shift adds the range). Keys are ids.
 */
export class Selection {
  constructor(onChange) {
    this.ids = new Set();
    this.anchor = null;
    this.cursor = null;
    this.onChange = onChange;
  }

  has(id) {
    return this.ids.has(id);
  }

  get size() {
    return this.ids.size;
  }

  list() {
    return [...this.ids];
  }

  set(ids, { anchor, cursor } = {}) {
    this.ids = new Set(ids);
    if (anchor !== undefined) this.anchor = anchor;
    if (cursor !== undefined) this.cursor = cursor;
    this.onChange();
  }

  clear() {
    this.set([], { anchor: null });
  }

  /** Apply a click on `id`; `order` is the list of ids in display order. */
  click(id, order, { ctrl = false, shift = false } = {}) {
    if (shift && this.anchor !== null && order.includes(this.anchor)) {
      const a = order.indexOf(this.anchor);
      const b = order.indexOf(id);
      const range = order.slice(Math.min(a, b), Math.max(a, b) + 1);
      const base = ctrl ? this.ids : new Set();
      for (const x of range) base.add(x);
      this.ids = base;
      this.cursor = id;
    } else if (ctrl) {
      if (this.ids.has(id)) this.ids.delete(id);
      else this.ids.add(id);
      this.anchor = id;
      this.cursor = id;
    } else {
      this.ids = new Set([id]);
      this.anchor = id;
      this.cursor = id;
    }
    this.onChange();
  }

  /** Keyboard: move the cursor by `delta` rows; with shift, extend from the anchor. */
  move(delta, order, { shift = false, absolute = null } = {}) {
    if (!order.length) return null;
    let i = this.cursor !== null ? order.indexOf(this.cursor) : -1;
    if (absolute !== null) i = absolute < 0 ? order.length - 1 : absolute;
    else if (i < 0) i = delta > 0 ? 0 : order.length - 1;
    else i = Math.max(0, Math.min(order.length - 1, i + delta));
    const id = order[i];
    this.click(id, order, { shift });
    return id;
  }

  toggleCursor() {
    if (this.cursor === null) return;
    if (this.ids.has(this.cursor)) this.ids.delete(this.cursor);
    else this.ids.add(this.cursor);
    this.anchor = this.cursor;
    this.onChange();
  }
}

// ---- tables ------------------------------------------------------------------------------

/** A header row; `columns` entries have key, label, title?, sort (column name or null), cls. */
export function headerRow(columns, sort, order, onSort, lead) {
  const cells = columns.map((col) => {
    const sortable = Boolean(col.sort);
    const active = sortable && sort === col.sort;
    const th = h("th", {
      class: [(col.cls || "").split(" ").filter((c) => c === "num" || c === "check").join(" "), sortable ? "sortable" : "", active ? `sorted ${order}` : ""].join(" ").trim(),
      title: col.title || (sortable ? `Sort by ${col.label}` : col.label),
      scope: "col",
      "aria-sort": active ? (order === "asc" ? "ascending" : "descending") : null,
      dataset: { key: col.key },
    }, h("span", { text: col.label }), sortable ? h("span", { class: "arrow", "aria-hidden": "true" }) : null);
    if (sortable) {
      th.tabIndex = 0;
      const go = () => onSort(col.sort);
      th.addEventListener("click", go);
      th.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          go();
        }
      });
    }
    return th;
  });
  return h("tr", null, lead || null, cells);
}

export function stateBadge(state) {
  const st = String(state || "").toUpperCase();
  return h("span", { class: `state st-${st || "NONE"}`, text: st || "—" });
}

export function progressBar(fraction, label) {
  const p = Math.max(0, Math.min(1, Number(fraction) || 0));
  const fill = h("span", { class: "bar-fill" });
  fill.style.width = `${(p * 100).toFixed(2)}%`;
  return h("span", { class: `bar${p >= 1 ? " full" : ""}`, role: "progressbar",
    "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": String(Math.round(p * 100)) },
  fill, h("span", { class: "bar-text", text: label }));
}

/** Labeled form control helper. */
export function field(label, control, hint) {
  return h("label", { class: "field" }, h("span", { class: "field-label", text: label }), control,
    hint ? h("span", { class: "field-hint", text: hint }) : null);
}
