// The REST client. Every failure becomes an ApiError whose message is what the server said
// ({"error": "..."} bodies) or what went wrong on the way; callers show it with notify.error.

import { noteServerTime } from "./format.js";

export class ApiError extends Error {
  constructor(message, status, method, path) {
    super(message);
    this.status = status;
    this.method = method;
    this.path = path;
  }
}

const listeners = new Set();
/** Called with (ok: boolean, error?) after each request: drives the connection indicator. */
export function onApiStatus(fn) {
  listeners.add(fn);
}

function report(ok, error) {
  for (const fn of listeners) fn(ok, error);
}

export function query(params) {
  const q = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value === undefined || value === null || value === "") continue;
    q.set(key, Array.isArray(value) ? value.join(",") : String(value));
  }
  const text = q.toString();
  return text ? `?${text}` : "";
}

export async function api(method, path, body, { signal } = {}) {
  const init = { method, headers: { Accept: "application/json" }, signal, cache: "no-store" };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    if (err.name === "AbortError") throw err;
    const error = new ApiError(`server unreachable (${method} ${path})`, 0, method, path);
    report(false, error);
    throw error;
  }
  const text = await response.text();
  let data = null;
  let parsed = false;
  if (text) {
    try {
      data = JSON.parse(text);
      parsed = true;
    } catch {
      parsed = false;
    }
  }
  if (!response.ok) {
    let message;
    if (parsed && data && typeof data === "object" && data.error) message = String(data.error);
    else if (text) message = text.replace(/<[^>]*>/g, " ").replace(/\s+/g, " ").trim().slice(0, 300);
    else message = response.statusText || "request failed";
    const error = new ApiError(`${message} (HTTP ${response.status}, ${method} ${path.split("?")[0]})`,
      response.status, method, path);
    error.data = parsed ? data : null; // the whole answer: e.g. an OpenJD template's `problems`
    report(response.status < 500, error);
    throw error;
  }
  report(true);
  if (text && !parsed) {
    throw new ApiError(`the server sent something that is not JSON (${method} ${path})`,
      response.status, method, path);
  }
  if (data && typeof data === "object" && !Array.isArray(data) && typeof data.now === "number") {
    noteServerTime(data.now);
  }
  return data;
}

export const get = (path, params, opts) => api("GET", path + query(params), undefined, opts);
export const post = (path, body) => api("POST", path, body);
export const put = (path, body) => api("PUT", path, body);
export const del = (path, body) => api("DELETE", path, body);

/** Run `fn` over `items` with at most `width` calls in flight; results in order. */
export async function pool(items, width, fn) {
  const results = new Array(items.length);
  let next = 0;
  async function lane() {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(width, items.length) }, lane));
  return results;
}
