// Tiny DOM helpers. Everything the page shows goes through textContent, attributes or
// properties: there is no innerHTML anywhere in web/, so job titles, commands, logs and
// worker names can never become markup.

const SVG_NS = "http://www.w3.org/2000/svg";

function setProps(el, props, svg) {
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "innerHTML" || key === "outerHTML") throw new Error("no markup injection");
    if (key === "class") {
      if (svg) el.setAttribute("class", value);
      else el.className = value;
    } else if (key === "text") {
      el.textContent = String(value);
    } else if (key === "dataset") {
      Object.assign(el.dataset, value);
    } else if (key === "style") {
      Object.assign(el.style, value);
    } else if (key.startsWith("on") && typeof value === "function") {
      el.addEventListener(key.slice(2), value);
    } else if (!svg && (key === "value" || key === "checked" || key === "selected" || key === "disabled")) {
      el[key] = value;
    } else {
      el.setAttribute(key, value === true ? "" : String(value));
    }
  }
}

function appendKids(el, kids) {
  for (const kid of kids) {
    if (kid === undefined || kid === null || kid === false) continue;
    if (Array.isArray(kid)) appendKids(el, kid);
    else if (kid instanceof Node) el.append(kid);
    else el.append(document.createTextNode(String(kid)));
  }
}

/** Create an HTML element: h("td", {class: "num", title: "x"}, "text", child...). */
export function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  setProps(el, props, false);
  appendKids(el, kids);
  return el;
}

/** Create an SVG element. */
export function s(tag, props, ...kids) {
  const el = document.createElementNS(SVG_NS, tag);
  setProps(el, props, true);
  appendKids(el, kids);
  return el;
}

/** Replace the children of `el` (null/false/undefined kids are skipped, arrays flattened). */
export function fill(el, ...kids) {
  clear(el);
  appendKids(el, kids);
  return el;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

export function $(selector, root = document) {
  return root.querySelector(selector);
}

/** A link only for http(s) URLs (and relative paths): never javascript:, data: and friends. */
export function safeHref(url) {
  if (!url) return null;
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

/** True when the keyboard event's target is a text field (shortcuts must not fire there). */
export function isTyping(event) {
  const t = event.target;
  if (!t || !t.tagName) return false;
  const tag = t.tagName;
  if (tag === "TEXTAREA" || tag === "SELECT" || t.isContentEditable) return true;
  if (tag === "INPUT") {
    const type = (t.type || "text").toLowerCase();
    return !["checkbox", "radio", "button", "submit"].includes(type);
  }
  return false;
}

export function debounce(fn, ms) {
  let timer = null;
  const wrapped = (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
  wrapped.cancel = () => clearTimeout(timer);
  return wrapped;
}
