// The Log view: a job's output as plain text, followed live by polling byte ranges
// (GET /api/jobs/ID/log?offset=N) while the job runs.

import * as API from "./api.js";
import { h, clear, fill } from "./dom.js";
import { fmtFullTime, fmtDuration, fmtPercent, fmtCount } from "./format.js";
import * as prefs from "./prefs.js";
import { notify, stateBadge, progressBar } from "./ui.js";

const TAIL = 256 * 1024; // bytes shown when a log is opened
const KEEP_CHARS = 4 * 1024 * 1024; // characters kept in the page while following
const FAST = 1000; // ms between polls while the job runs
const SLOW = 5000; // ms between polls otherwise
const encoder = new TextEncoder();
const bytes = (text) => encoder.encode(text).length;

export class LogView {
  constructor(app) {
    this.app = app;
    this.prefs = prefs.load("log", { follow: true, wrap: false });
    this.timer = null;
    this.seq = 0;
  }

  mount(root, params) {
    this.root = root;
    this.id = Number(params.id) || 0;
    this.seq++;
    if (!this.id) return this.mountPicker();
    const recent = prefs.load("log.recent", []).filter((x) => x !== this.id);
    prefs.save("log.recent", [this.id, ...recent].slice(0, 12));

    this.head = h("div", { class: "log-head" });
    this.follow = h("input", { type: "checkbox", checked: this.prefs.follow });
    this.wrap = h("input", { type: "checkbox", checked: this.prefs.wrap });
    this.follow.addEventListener("change", () => {
      this.prefs.follow = this.follow.checked;
      prefs.save("log", this.prefs);
      if (this.follow.checked) this.scrollEnd();
    });
    this.wrap.addEventListener("change", () => {
      this.prefs.wrap = this.wrap.checked;
      prefs.save("log", this.prefs);
      this.pre.classList.toggle("wrap", this.wrap.checked);
    });
    this.earlierBtn = h("button", { class: "btn", text: "Load earlier", hidden: true, onclick: () => this.loadEarlier() });
    this.sizeInfo = h("span", { class: "muted log-size" });
    this.liveDot = h("span", { class: "live", hidden: true, title: "following the running job", text: "live" });
    this.pre = h("pre", { class: `log${this.prefs.wrap ? " wrap" : ""}`, tabindex: "0", "aria-label": "Job log", "aria-live": "off" });
    this.scroller = h("div", { class: "log-wrap" }, this.pre);
    this.scroller.addEventListener("scroll", () => {
      const atEnd = this.scroller.scrollTop + this.scroller.clientHeight >= this.scroller.scrollHeight - 4;
      if (!atEnd && this.follow.checked && !this.autoScrolling) {
        this.follow.checked = false;
      } else if (atEnd && !this.follow.checked && this.prefs.follow) {
        this.follow.checked = true;
      }
    });
    fill(root, h("section", { class: "view log-view" },
      this.head,
      h("div", { class: "toolbar" },
        h("label", { class: "check-row", title: "Keep the end of the log in view (End)" }, this.follow, h("span", { text: "Follow" })),
        h("label", { class: "check-row", title: "Wrap long lines (w)" }, this.wrap, h("span", { text: "Wrap" })),
        this.earlierBtn,
        h("button", { class: "btn", text: "Reload", title: "Reload the tail of the log", onclick: () => this.start() }),
        h("button", { class: "btn", text: "Download", title: "Save the whole log as a text file", onclick: () => this.download() }),
        h("button", { class: "btn", text: "Clear", title: "Clear the view (the log on the server is kept)", onclick: () => this.clearView() }),
        h("span", { class: "spacer" }), this.liveDot, this.sizeInfo),
      this.scroller));
    this.start();
  }

  mountPicker() {
    const input = h("input", { type: "search", inputmode: "numeric", placeholder: "Job id", size: 10, "aria-label": "Job id" });
    const form = h("form", { class: "log-picker" }, h("label", { class: "field" }, h("span", { class: "field-label", text: "Open the log of job" }), input),
      h("button", { class: "btn primary", text: "Open" }));
    form.addEventListener("submit", (e) => {
      e.preventDefault();
      if (/^\d+$/.test(input.value.trim())) this.app.navigate(`#/log/${input.value.trim()}`);
      else notify.error("Type a job id (a number).");
    });
    const recent = prefs.load("log.recent", []);
    fill(this.root, h("section", { class: "view log-view" },
      h("div", { class: "viewbar" }, h("h1", { text: "Log" })),
      h("div", { class: "padded" }, form,
        recent.length ? h("div", { class: "recent" }, h("h2", { text: "Recently opened" }),
          h("ul", null, recent.map((id) => h("li", null, h("a", { href: `#/log/${id}`, text: `job ${id}` }))))) : null,
        h("p", { class: "muted", text: "Tip: double-click a job in the Jobs view, or select it and press L." }))));
    setTimeout(() => input.focus(), 0);
  }

  unmount() {
    this.seq++;
    clearTimeout(this.timer);
  }

  refresh() {
    if (this.id) this.poll(this.seq);
  }

  async start() {
    const seq = ++this.seq;
    clearTimeout(this.timer);
    clear(this.pre);
    this.chars = 0;
    this.first = 0;
    this.next = 0;
    this.ranged = true;
    this.trimmed = false;
    this.job = null;
    await this.loadJob(seq);
    if (seq !== this.seq) return;
    try {
      const r = await API.get(`/api/jobs/${this.id}/log`, { tail: TAIL });
      if (seq !== this.seq) return;
      this.take(r, true);
    } catch (err) {
      if (seq === this.seq) notify.error(err);
    }
    this.schedule(seq);
  }

  schedule(seq) {
    clearTimeout(this.timer);
    if (seq !== this.seq) return;
    const running = this.job && (this.job.state === "WORKING" || this.job.state === "PENDING" || this.job.state === "WAITING");
    this.timer = setTimeout(() => this.poll(seq), running ? FAST : SLOW);
  }

  async poll(seq) {
    if (seq !== this.seq) return;
    clearTimeout(this.timer);
    try {
      const [, r] = await Promise.all([
        this.loadJob(seq),
        this.ranged ? API.get(`/api/jobs/${this.id}/log`, { offset: this.next }) : API.get(`/api/jobs/${this.id}/log`),
      ]);
      if (seq !== this.seq) return;
      this.take(r, false);
    } catch (err) {
      if (seq === this.seq && err.status !== 404) notify.error(err);
    }
    this.schedule(seq);
  }

  /** Take a log answer: a range {data, offset, size} or (older servers) the whole log string. */
  take(r, initial) {
    let text;
    if (typeof r === "string") {
      // A server without byte ranges: the whole log each time; show what is new.
      this.ranged = false;
      if (initial || r.length < (this.wholeLen || 0)) {
        clear(this.pre);
        this.chars = 0;
        text = r.length > TAIL ? r.slice(-TAIL) : r;
      } else {
        text = r.slice(this.wholeLen);
      }
      this.wholeLen = r.length;
      this.total = r.length;
    } else if (r && typeof r === "object") {
      const data = String(r.data ?? "");
      const offset = Number(r.offset) || 0;
      const total = Number(r.size ?? r.total ?? 0);
      if (!initial && total && total < this.next) {
        // The log shrank: the job was reset and runs again. Start over from its beginning.
        this.clearView(true);
        this.first = 0;
        this.next = 0;
        return this.poll(this.seq);
      }
      if (initial) this.first = offset;
      text = data;
      const end = r.next ?? r.end;
      this.next = typeof end === "number" ? end : offset + bytes(data);
      this.total = Math.max(total, this.next);
    } else {
      text = "";
    }
    if (text) this.append(text);
    this.earlierBtn.hidden = !(this.ranged && this.first > 0);
    this.sizeInfo.textContent = this.total ? `${fmtBytes(this.total)}${this.first > 0 ? `, from byte ${fmtCount(this.first)}` : ""}` : "empty";
    if (!this.chars && !this.total) this.pre.dataset.empty = "No output yet.";
    else delete this.pre.dataset.empty;
  }

  append(text) {
    const node = document.createTextNode(text); // text only: a log is never markup
    this.pre.append(node);
    this.chars += text.length;
    while (this.chars > KEEP_CHARS && this.pre.firstChild && this.pre.childNodes.length > 1) {
      const gone = this.pre.firstChild;
      this.chars -= gone.textContent.length;
      this.pre.removeChild(gone);
      this.trimmed = true;
    }
    if (this.follow.checked) this.scrollEnd();
  }

  scrollEnd() {
    this.autoScrolling = true;
    this.scroller.scrollTop = this.scroller.scrollHeight;
    requestAnimationFrame(() => {
      this.autoScrolling = false;
    });
  }

  async loadEarlier() {
    if (!this.ranged || this.first <= 0) return;
    const start = Math.max(0, this.first - TAIL);
    try {
      const r = await API.get(`/api/jobs/${this.id}/log`, { offset: start, limit: this.first - start });
      const data = String(r.data ?? "");
      const keep = this.scroller.scrollHeight - this.scroller.scrollTop;
      this.pre.insertBefore(document.createTextNode(data), this.pre.firstChild);
      this.chars += data.length;
      this.first = start;
      this.earlierBtn.hidden = this.first === 0;
      this.scroller.scrollTop = this.scroller.scrollHeight - keep;
    } catch (err) {
      notify.error(err);
    }
  }

  clearView(quiet = false) {
    clear(this.pre);
    this.chars = 0;
    if (!quiet) this.first = this.next;
    this.earlierBtn.hidden = !(this.ranged && this.first > 0);
  }

  async download() {
    try {
      const whole = await API.get(`/api/jobs/${this.id}/log`);
      const text = typeof whole === "string" ? whole : String(whole?.data ?? "");
      const url = URL.createObjectURL(new Blob([text], { type: "text/plain;charset=utf-8" }));
      const a = h("a", { href: url, download: `job-${this.id}.log` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (err) {
      notify.error(err);
    }
  }

  async loadJob(seq) {
    try {
      const job = await API.get(`/api/jobs/${this.id}`);
      if (seq !== this.seq) return;
      this.job = job;
      this.renderHead();
    } catch (err) {
      if (seq !== this.seq) return;
      if (!this.job) {
        fill(this.head, h("div", { class: "viewbar" }, h("h1", { text: `Job ${this.id}` })));
      }
      throw err;
    }
  }

  renderHead() {
    const j = this.job;
    const running = j.state === "WORKING";
    this.liveDot.hidden = !running;
    const parentLink = Number(j.parent) ? `#/jobs/${j.parent}` : "#/jobs";
    fill(this.head, 
      h("div", { class: "viewbar" },
        h("h1", null, h("span", { class: "muted", text: `Job ${j.id} ` }), h("span", { class: "log-title", text: j.title || "" })),
        stateBadge(j.state),
        progressBar(j.progress, fmtPercent(j.progress)),
        h("span", { class: "spacer" }),
        h("a", { class: "btn", href: parentLink, text: "Show in its group" }),
        h("a", { class: "btn", href: `#/activities?job=${j.id}`, text: "Runs" })),
      h("dl", { class: "facts" },
        fact("Worker", j.worker || "—"),
        fact("Started", fmtFullTime(j.start_time) || "—"),
        fact("Duration", j.start_time ? fmtDuration(j.duration) : "—"),
        fact("Runs", String(j.run_done ?? 0)),
        fact("User", j.user || "—"),
        fact("Command", j.command || "", "mono")));
  }

  onKey(e) {
    if (e.key === "End") {
      this.follow.checked = true;
      this.scrollEnd();
      return true;
    }
    if (e.key === "w") {
      this.wrap.click();
      return true;
    }
    if (e.key === "Backspace" && this.job) {
      this.app.navigate(Number(this.job.parent) ? `#/jobs/${this.job.parent}` : "#/jobs");
      return true;
    }
    return false;
  }
}

function fact(label, value, cls = "") {
  return h("div", { class: "fact" }, h("dt", { text: label }), h("dd", { class: cls, text: value, title: value }));
}

function fmtBytes(n) {
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KB`;
  return `${(n / 1024 / 1024).toFixed(1)} MB`;
}
