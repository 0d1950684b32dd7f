// The daemon's API as the dashboard uses it: every request carries the token from
// sessionStorage as a bearer header, and streams are read with fetch because
// EventSource cannot send headers.

const KEY = "chamberlain.token";

export const token = {
  get: () => sessionStorage.getItem(KEY),
  set: (value) => sessionStorage.setItem(KEY, value),
  clear: () => sessionStorage.removeItem(KEY),
};

/** An answer the API refused: its status, the server's {"error": ...} text, and the
 * whole body (a refused reload lists its problems there). */
export class ApiError extends Error {
  constructor(status, message, data = null) {
    super(message);
    this.status = status;
    this.data = data;
  }
}

/** Call the API; answers the decoded JSON, or throws ApiError with the server's message. */
export async function api(path, {method = "GET", body} = {}) {
  const headers = {Authorization: `Bearer ${token.get() ?? ""}`};
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, {
    method, headers, body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const message = data && typeof data.error === "string" ? data.error : `HTTP ${response.status}`;
    if (response.status === 401) window.dispatchEvent(new CustomEvent("chamberlain:unauthorized"));
    throw new ApiError(response.status, message, data);
  }
  return data;
}

/** The scope rules of chamberlain/web/auth.py `grants`, for hiding buttons. */
export function grants(scopes, required) {
  if (scopes.includes("*") || scopes.includes(required)) return true;
  const [resource, level] = required.split(":");
  if (level !== "ro") return false;
  return scopes.includes("read:*") || scopes.includes(`${resource}:rw`);
}

/**
 * Follow a Server-Sent Events stream until `signal` aborts it, calling
 * onEvent(name, data, id) for each event. After a drop it reconnects with the
 * last id it saw as Last-Event-ID, so nothing is lost or repeated. Answers when
 * the server ends the stream after an event named in `until`.
 */
export async function stream(path, onEvent, {signal, until = []} = {}) {
  let lastId = null;
  let delay = 1000;
  while (!signal?.aborted) {
    let finished = false;
    try {
      const headers = {Authorization: `Bearer ${token.get() ?? ""}`, Accept: "text/event-stream"};
      if (lastId !== null) headers["Last-Event-ID"] = lastId;
      const response = await fetch(path, {headers, signal});
      if (!response.ok) throw new ApiError(response.status, `stream refused: HTTP ${response.status}`);
      delay = 1000;
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = "";
      for (;;) {
        const {value, done} = await reader.read();
        if (done) break;
        buffer += value.replace(/\r\n?/g, "\n");
        let end;
        while ((end = buffer.indexOf("\n\n")) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end + 2);
          const event = parse(block);
          if (event === null) continue;
          if (event.id !== null) lastId = event.id;
          onEvent(event.name, event.data, event.id);
          if (until.includes(event.name)) finished = true;
        }
      }
    } catch (error) {
      if (signal?.aborted) return;
      if (error instanceof ApiError && error.status < 500) throw error;
    }
    if (finished) return;
    await new Promise((resolve) => setTimeout(resolve, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

function parse(block) {
  let name = "message", id = null;
  const data = [];
  for (const line of block.split("\n")) {
    if (line === "" || line.startsWith(":")) continue;
    const colon = line.indexOf(":");
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
    if (field === "event") name = value;
    else if (field === "id") id = value;
    else if (field === "data") data.push(value);
  }
  if (data.length === 0) return null;
  let parsed;
  try { parsed = JSON.parse(data.join("\n")); } catch { parsed = data.join("\n"); }
  return {name, id, data: parsed};
}
