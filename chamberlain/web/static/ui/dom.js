// Small DOM and formatting helpers shared by every view. Elements are built with
// textContent only, never innerHTML, so nothing a job or plugin returns can inject
// markup into the page.

/** Build an element: h("a", {href: "#/jobs"}, "Jobs"). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "class") el.className = value;
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** "3 s ago", "in 2 min": relative to now. */
export function relative(iso) {
  if (!iso) return "";
  const seconds = Math.round((Date.parse(iso) - Date.now()) / 1000);
  const size = Math.abs(seconds);
  if (size < 1) return "now";
  const [value, unit] =
    size < 60 ? [size, "s"] :
    size < 3600 ? [Math.round(size / 60), "min"] :
    size < 86400 ? [Math.round(size / 3600), "h"] : [Math.round(size / 86400), "d"];
  return seconds <= 0 ? `${value} ${unit} ago` : `in ${value} ${unit}`;
}

/** A <time> in the browser's zone, with the relative time beside it. */
export function when(iso) {
  if (!iso) return h("span", {class: "muted"}, "—");
  const local = new Date(iso).toLocaleString();
  return h("time", {datetime: iso, title: local, "data-relative": iso}, `${relative(iso)}`);
}

// Relative times go stale while a page stays open: refresh them all every few seconds.
setInterval(() => {
  for (const el of document.querySelectorAll("time[data-relative]")) {
    el.textContent = relative(el.getAttribute("data-relative"));
  }
}, 5000);

/** A status badge whose class colours it. */
export function badge(status) {
  return h("span", {class: `badge status-${status}`, "data-status": status}, status);
}

/** A folding view of any JSON value: objects and arrays are <details>. */
export function jsonView(value, label = "") {
  if (value !== null && typeof value === "object") {
    const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
    const summary = Array.isArray(value) ? `[${entries.length}]` : `{${entries.length}}`;
    return h("details", {class: "json", open: entries.length <= 12},
      h("summary", {}, label === "" ? summary : `${label}: ${summary}`),
      h("ul", {}, entries.map(([k, v]) => h("li", {}, jsonView(v, String(k))))));
  }
  const text = JSON.stringify(value);
  return h("span", {class: "json-leaf"}, label === "" ? "" : h("span", {class: "key"}, `${label}: `),
    h("span", {class: `json-${value === null ? "null" : typeof value}`}, text));
}

/** A message line shown in a polite live region, for errors and confirmations. */
export function notice(text, kind = "error") {
  return h("p", {class: `notice ${kind}`, role: kind === "error" ? "alert" : "status"}, text);
}
