// `fetch` in TypeScript: the agent's own HTTP request (`fetch` from the SDK,
// over `wasi:http`), sent by the host only to the hosts its manifest allows.
// The twin of the Python `fetch` agent.

import { agent, fetch, log } from "warden";

interface Input {
  url: string;
  method?: string;
  body?: string;
  headers?: Record<string, string>;
}

export const run = agent((input: Input) => {
  const method = input.method ?? "GET";
  const resp = fetch(input.url, { method, body: input.body, headers: input.headers });
  const body = resp.bytes();
  log.info(`${method} ${input.url} -> ${resp.status} (${body.length} bytes)`);
  const contentType = resp.headers.get("content-type") ?? "";
  const out: Record<string, unknown> = { status: resp.status, content_type: contentType, bytes: body.length };
  if (contentType.startsWith("application/json")) {
    out.json = resp.json();
  } else {
    out.text = resp.text();
  }
  return out;
});
