// The page shell: tabs and hash routing, auto-refresh, the connection indicator, keyboard
// shortcuts, theme. Each view is a long-lived object with mount/unmount/refresh/onKey.

import { h, clear, fill, isTyping } from "./dom.js";
import { onApiStatus, get, post } from "./api.js";
import * as prefs from "./prefs.js";
import { isDialogOpen, notify } from "./ui.js";
import { JobsView } from "./jobs.js";
import { WorkersView } from "./workers.js";
import { ActivitiesView } from "./activities.js";
import { LogView } from "./log.js";
import { AffinitiesView } from "./affinities.js";
import { LimitsView } from "./limits.js";
import { OverviewView, takeSample, SAMPLE_PERIOD } from "./overview.js";

const TABS = [
  ["overview", "Overview"],
  ["jobs", "Jobs"],
  ["workers", "Workers"],
  ["activities", "Activities"],
  ["log", "Log"],
  ["affinities", "Affinities"],
  ["limits", "Limits"],
];
const INTERVALS = [2, 4, 10, 30];

const settings = prefs.load("app", { auto: true, interval: 4, theme: "auto" });

const app = {
  current: null,
  currentName: "",
  navigate(hash) {
    if (location.hash === hash) route();
    else location.hash = hash;
  },
  markUpdated() {
    const d = new Date();
    const pad = (n) => String(n).padStart(2, "0");
    updated.textContent = `updated ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  },
};

const views = {
  overview: new OverviewView(app),
  jobs: new JobsView(app),
  workers: new WorkersView(app),
  activities: new ActivitiesView(app),
  log: new LogView(app),
  affinities: new AffinitiesView(app),
  limits: new LimitsView(app),
};

// ---- header -------------------------------------------------------------------------------

const tabLinks = new Map();
const nav = document.getElementById("tabs");
TABS.forEach(([name, label], i) => {
  const a = h("a", { href: `#/${name}`, class: "tab", title: `${label} (${i + 1})`, dataset: { view: name } }, label);
  tabLinks.set(name, a);
  nav.append(a);
});

const autoBox = document.getElementById("auto");
const intervalSel = document.getElementById("interval");
const refreshBtn = document.getElementById("refresh");
const conn = document.getElementById("conn");
const updated = document.getElementById("updated");
const themeBtn = document.getElementById("theme");
const helpBtn = document.getElementById("help");

autoBox.checked = settings.auto;
for (const n of INTERVALS) intervalSel.append(h("option", { value: String(n), text: `${n} s`, selected: n === settings.interval }));
autoBox.addEventListener("change", () => {
  settings.auto = autoBox.checked;
  prefs.save("app", settings);
  schedule();
});
intervalSel.addEventListener("change", () => {
  settings.interval = Number(intervalSel.value);
  prefs.save("app", settings);
  schedule();
});
refreshBtn.addEventListener("click", () => manualRefresh());

onApiStatus((ok, error) => {
  if (ok && conn.classList.contains("down")) {
    // Back online: the "unreachable" errors are over.
    for (const t of document.querySelectorAll("#toasts .toast-error")) {
      if ((t.dataset.message || "").startsWith("server unreachable")) t.remove();
    }
  }
  if (error && error.status === 401 && app.loginRequired) {
    // The login session ended: back to the login page, then here again.
    location.assign(`/login.html?next=${encodeURIComponent(`/${location.hash}`)}`);
    return;
  }
  conn.classList.toggle("down", !ok);
  conn.title = ok ? "connected" : error?.message || "server unreachable";
  conn.textContent = ok ? "" : "offline";
});

function applyTheme() {
  const t = settings.theme;
  if (t === "auto") delete document.documentElement.dataset.theme;
  else document.documentElement.dataset.theme = t;
  themeBtn.textContent = { auto: "◐", light: "☀", dark: "☾" }[t];
  themeBtn.title = `Theme: ${t} (click to change)`;
}
themeBtn.addEventListener("click", () => {
  settings.theme = { auto: "light", light: "dark", dark: "auto" }[settings.theme] || "auto";
  prefs.save("app", settings);
  applyTheme();
});
applyTheme();

// Who is logged in (LDAP farms): the name, a Logout button, and the actions this login may
// not use hidden (the server refuses them anyway). An open farm answers with every right.
async function whoami() {
  let who;
  try {
    who = await get("/api/whoami");
  } catch (err) {
    if (err.status !== 404) notify.error(err);
    return;
  }
  app.loginRequired = Boolean(who && who.login_required);
  const can = (who && who.can) || {};
  for (const right of ["create", "edit", "delete", "workers"]) {
    document.body.classList.toggle(`cannot-${right}`, can[right] === false);
  }
  if (app.loginRequired && who.user) {
    fill(document.getElementById("user"),
      h("span", { class: "who", title: `logged in as ${who.user}`, text: who.user }),
      h("button", { class: "btn top", text: "Logout", onclick: async () => {
        try {
          await post("/api/logout");
        } finally {
          location.assign("/login.html");
        }
      } }));
  }
}
whoami();

// ---- routing ------------------------------------------------------------------------------

function parseHash() {
  const raw = location.hash.replace(/^#\/?/, "");
  const [path, qs] = raw.split("?");
  const [name, id] = path.split("/");
  return { name: views[name] ? name : "jobs", id: id || "", query: new URLSearchParams(qs || "") };
}

function route() {
  const params = parseHash();
  if (app.current) app.current.unmount();
  app.current = views[params.name];
  app.currentName = params.name;
  for (const [name, a] of tabLinks) {
    a.classList.toggle("active", name === params.name);
    if (name === params.name) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const root = document.getElementById("view");
  clear(root);
  document.title = `${TABS.find(([n]) => n === params.name)[1]} · Coalition`;
  app.current.mount(root, params);
  schedule();
}

window.addEventListener("hashchange", route);

// ---- refresh ------------------------------------------------------------------------------

let timer = null;
let sampleTimer = null;
let refreshing = false;

async function tick() {
  if (!settings.auto) return;
  if (!document.hidden && !isDialogOpen() && !refreshing && app.current?.refresh) {
    refreshing = true;
    try {
      await app.current.refresh({ auto: true });
    } finally {
      refreshing = false;
    }
  }
  schedule();
}

function schedule() {
  clearTimeout(timer);
  if (settings.auto) timer = setTimeout(tick, settings.interval * 1000);
}

async function manualRefresh() {
  if (!app.current?.refresh) return;
  refreshBtn.classList.add("spin");
  try {
    await app.current.refresh({ auto: false });
  } finally {
    refreshBtn.classList.remove("spin");
  }
  schedule();
}

// Samples for the Overview chart, whatever view is open (quietly: the Overview reports errors).
let statsMissing = false;
async function sample() {
  if (!statsMissing && !document.hidden && app.currentName !== "overview") {
    try {
      await takeSample();
    } catch (err) {
      if (err.status === 404) statsMissing = true;
    }
  }
  sampleTimer = setTimeout(sample, SAMPLE_PERIOD * 1000);
}
sampleTimer = setTimeout(sample, SAMPLE_PERIOD * 1000);

document.addEventListener("visibilitychange", () => {
  if (!document.hidden && settings.auto) tick();
});

// ---- keyboard -----------------------------------------------------------------------------

const SHORTCUTS = [
  ["Everywhere", [
    ["1 … 6", "Overview, Jobs, Workers, Activities, Log, Affinities"],
    ["r", "refresh now"],
    ["?", "this help"],
    ["/", "focus the search or filter field"],
  ]],
  ["Jobs and workers", [
    ["↑ ↓  j k", "move; with Shift: extend the selection"],
    ["Home End", "first, last row"],
    ["Space", "toggle the row in the selection"],
    ["Ctrl+A", "select the whole page"],
    ["Esc", "clear the selection, close the panel"],
    ["click / Ctrl+click / Shift+click", "select / toggle / select a range"],
  ]],
  ["Jobs", [
    ["Enter, double-click", "open a group, or a job's log"],
    ["Backspace, Alt+↑", "up to the parent group"],
    ["[ ]", "previous, next page"],
    ["a / e / f", "add a job / edit the selection / its frames and time left"],
    ["o", "submit an Open Job Description template into this group"],
    ["s / p", "start / pause"],
    ["Shift+R / Shift+E", "reset / reset errors"],
    ["x / v", "cut / paste into this group"],
    ["Del", "delete (asks first)"],
    ["l", "open the log"],
    ["Ctrl+Enter", "apply the edit panel"],
  ]],
  ["Workers / Log", [
    ["s / Shift+S", "start / stop the selected workers"],
    ["e", "edit the affinity rules"],
    ["End / w", "follow the log / wrap lines"],
  ]],
];

function showHelp() {
  const dialog = document.getElementById("confirm");
  clear(dialog);
  const close = h("button", { class: "btn primary", value: "cancel", text: "Close" });
  dialog.append(h("form", { method: "dialog", class: "help" },
    h("h2", { text: "Keyboard shortcuts" }),
    h("div", { class: "help-cols" }, SHORTCUTS.map(([title, rows]) => h("div", null, h("h3", { text: title }),
      h("dl", null, rows.map(([k, v]) => [h("dt", null, h("kbd", { text: k })), h("dd", { text: v })]))))),
    h("div", { class: "dialog-buttons" }, close)));
  dialog.showModal();
  close.focus();
}
helpBtn.addEventListener("click", showHelp);

document.addEventListener("keydown", (e) => {
  if (isDialogOpen()) return;
  if (isTyping(e)) {
    if (e.key === "Escape") e.target.blur();
    return;
  }
  if (app.current?.onKey && app.current.onKey(e)) {
    e.preventDefault();
    return;
  }
  if (e.ctrlKey || e.metaKey || e.altKey) return;
  if (/^[1-6]$/.test(e.key)) {
    app.navigate(`#/${TABS[Number(e.key) - 1][0]}`);
    e.preventDefault();
  } else if (e.key === "r") {
    manualRefresh();
    e.preventDefault();
  } else if (e.key === "?") {
    showHelp();
    e.preventDefault();
  }
});

// Drop-down menus (Select, Columns) close when the click lands elsewhere.
document.addEventListener("click", (e) => {
  for (const menu of document.querySelectorAll("details.menu[open]")) if (!menu.contains(e.target)) menu.open = false;
});

window.addEventListener("unhandledrejection", (e) => {
  notify.error(e.reason || "unexpected error");
});

if (!location.hash) history.replaceState(null, "", "#/jobs");
route();
window.coalition = { app, views }; // for debugging from the console
