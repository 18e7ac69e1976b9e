// Outgoing HTTP: `fetch(url, init)` sends one request and returns its whole
// response, through `warden:agent/http` (the QuickJS builder cannot import
// `wasi:http`; the host sends both alike). The host sends it under the agent's
// manifest, as for the `http_fetch` tool (which its `tools` must grant): only
// to `allowed_hosts`, never to private addresses, no redirects, within the
// host's size and time caps; each is recorded on the run as an `http` tool
// call (and journaled in a durable run). It is synchronous, like every host
// import: agents are not `async`.

import * as witHttp from "warden:agent/http@0.1.0";

import { AgentError } from "./errors.js";

/** A refused or failed request; `code` names the `wasi:http` error. */
export class HttpError extends AgentError {
  constructor(code, message) {
    super(code, message);
    this.name = "HttpError";
  }
}

/** The response's headers: `get(name)` (case-insensitive), `has`, `entries`. */
export class Headers {
  constructor(entries = []) {
    this.map = new Map();
    for (const [name, value] of entries) {
      const key = name.toLowerCase();
      this.map.set(key, this.map.has(key) ? `${this.map.get(key)}, ${value}` : value);
    }
  }
  get(name) {
    return this.map.get(name.toLowerCase()) ?? null;
  }
  has(name) {
    return this.map.has(name.toLowerCase());
  }
  entries() {
    return this.map.entries();
  }
}

/** A whole response: `status`, `ok`, `headers`, and its body as `text()`, `json()` or `bytes()`. */
export class Response {
  constructor(status, headers, body) {
    this.status = status;
    this.ok = status >= 200 && status < 300;
    this.headers = headers;
    this.body = body;
  }
  bytes() {
    return this.body;
  }
  text() {
    return utf8Decode(this.body);
  }
  json() {
    return JSON.parse(this.text());
  }
}

/** Sends one request (`init`: `method`, `headers`, `body` as a string or bytes, `timeoutMs`). */
export function fetch(url, init = {}) {
  url = String(url);
  let body = init.body ?? new Uint8Array(0);
  if (typeof body === "string") body = utf8Encode(body);
  let got;
  try {
    got = witHttp.send({
      method: String(init.method ?? "GET").toUpperCase(),
      url,
      headers: Object.entries(init.headers ?? {}).map(([k, v]) => [k, String(v)]),
      body,
      timeoutMs: init.timeoutMs ?? undefined,
    });
  } catch (e) {
    const error = e?.payload;
    if (error && typeof error.code === "string") throw new HttpError(error.code, `${url}: ${error.message}`);
    throw e;
  }
  return new Response(got.status, new Headers(got.headers), new Uint8Array(got.body));
}

// UTF-8 by hand: the QuickJS runtime has no TextEncoder or TextDecoder.
function utf8Encode(text) {
  const out = [];
  for (const ch of text) {
    const c = ch.codePointAt(0);
    if (c < 0x80) out.push(c);
    else if (c < 0x800) out.push(0xc0 | (c >> 6), 0x80 | (c & 63));
    else if (c < 0x10000) out.push(0xe0 | (c >> 12), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
    else out.push(0xf0 | (c >> 18), 0x80 | ((c >> 12) & 63), 0x80 | ((c >> 6) & 63), 0x80 | (c & 63));
  }
  return new Uint8Array(out);
}

function utf8Decode(bytes) {
  let out = "";
  for (let i = 0; i < bytes.length; ) {
    const b = bytes[i];
    const need = b < 0x80 ? 0 : b >= 0xf8 ? -1 : b >= 0xf0 ? 3 : b >= 0xe0 ? 2 : b >= 0xc2 ? 1 : -1;
    let c = need === 0 ? b : need === 1 ? b & 31 : need === 2 ? b & 15 : b & 7;
    let ok = need >= 0 && i + need < bytes.length + (need === 0 ? 1 : 0);
    for (let k = 1; ok && k <= need; k++) {
      const next = bytes[i + k];
      if ((next & 0xc0) !== 0x80) ok = false;
      else c = (c << 6) | (next & 63);
    }
    // Overlong forms, surrogates and what is past Unicode are not UTF-8.
    const least = [0, 0x80, 0x800, 0x10000][need] ?? 0;
    if (!ok || c > 0x10ffff || c < least || (c >= 0xd800 && c <= 0xdfff)) {
      out += "\ufffd";
      i += 1;
    } else {
      out += String.fromCodePoint(c);
      i += need + 1;
    }
  }
  return out;
}
