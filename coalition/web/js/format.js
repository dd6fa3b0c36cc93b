// Formatting of times, durations, sizes and counts. All times from the API are float
// seconds since the epoch; `serverNow()` corrects for clock skew between browser and server.

let skew = 0; // server clock minus browser clock, seconds

export function noteServerTime(now) {
  if (typeof now === "number" && now > 0) skew = now - Date.now() / 1000;
}

export function serverNow() {
  return Date.now() / 1000 + skew;
}

const pad = (n, w = 2) => String(n).padStart(w, "0");

export function fmtTime(ts) {
  if (!ts) return "";
  const d = new Date(ts * 1000);
  const now = new Date();
  const hms = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  if (d.toDateString() === now.toDateString()) return hms;
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${hms}`;
}

export function fmtFullTime(ts) {
  if (!ts) return "";
  const d = new Date(ts * 1000);
  return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || seconds === "" || isNaN(seconds)) return "";
  let s = Math.max(0, Math.round(Number(seconds)));
  if (s < 60) return `${s}s`;
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hr = Math.floor(s / 3600); s -= hr * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${pad(hr)}h`;
  if (hr) return `${hr}h ${pad(m)}m`;
  return `${m}m ${pad(s)}s`;
}

export function fmtAgo(ts) {
  if (!ts) return "never";
  const age = serverNow() - ts;
  if (age < 1.5) return "now";
  return `${fmtDuration(age)} ago`;
}

export function fmtMB(mb) {
  const n = Number(mb) || 0;
  if (n >= 1024) return `${(n / 1024).toFixed(n >= 10240 ? 0 : 1)} GB`;
  return `${Math.round(n)} MB`;
}

const nf = new Intl.NumberFormat("en-US");
export function fmtCount(n) {
  return nf.format(Number(n) || 0);
}

export function fmtPercent(fraction) {
  const p = Math.max(0, Math.min(1, Number(fraction) || 0)) * 100;
  return p >= 99.95 || p === 0 ? `${Math.round(p)}%` : `${p.toFixed(p < 10 ? 1 : 0)}%`;
}

/** CPU loads arrive as a list, or (Coalition 4 workers) as a JSON-list string. */
export function cpuList(cpu) {
  if (Array.isArray(cpu)) return cpu.map(Number).filter((x) => !isNaN(x));
  if (typeof cpu === "string" && cpu.trim()) {
    try {
      const parsed = JSON.parse(cpu);
      if (Array.isArray(parsed)) return parsed.map(Number).filter((x) => !isNaN(x));
      if (typeof parsed === "number") return [parsed];
    } catch {
      return [];
    }
  }
  if (typeof cpu === "number") return [cpu];
  return [];
}

/** Coalition's environment string: KEY=VALUE pairs separated by the two characters \n. */
export function envToLines(env) {
  if (!env || env === "None") return "";
  return String(env).split("\\n").join("\n");
}

export function linesToEnv(text) {
  return String(text || "")
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean)
    .join("\\n");
}

export function parseIdList(text) {
  const ids = String(text || "").match(/\d+/g) || [];
  return [...new Set(ids.map(Number))];
}
