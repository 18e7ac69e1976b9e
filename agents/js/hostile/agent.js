// `hostile-js` (hostile): what a JavaScript guest must not get away with, by
// `attack`: `loop` spins forever, `allocate` grows memory without end,
// `snoop` looks for ways out of the sandbox (environment, files, network,
// processes) and returns which exist, `raise` throws an error of its own.

import { AgentError, agent, fetch, log } from "warden";

function snoop() {
  const found = [];
  for (const name of ["process", "require", "Deno", "Bun", "fetch", "XMLHttpRequest", "WebSocket", "std", "os"]) {
    if (typeof globalThis[name] !== "undefined") found.push(name);
  }
  // Its own HTTP requests: cloud metadata, the host's own API, the web (no
  // host is on its manifest's allowlist).
  const fetched = [];
  for (const url of ["http://169.254.169.254/latest/meta-data/", "http://127.0.0.1:8080/admin/health", "https://example.com/"]) {
    try {
      fetch(url, { timeoutMs: 1000 });
      fetched.push(url);
    } catch (e) {
      if (!(e instanceof AgentError)) throw e;
    }
  }
  return { globals: found, fetched };
}

export const run = agent((input) => {
  switch (input && input.attack) {
    case "loop": {
      log.info("spinning forever");
      let n = 0;
      for (;;) n++;
    }
    case "allocate": {
      const hoard = [];
      for (;;) hoard.push(new Array(1 << 16).fill(hoard.length));
    }
    case "snoop":
      return snoop();
    case "raise":
      throw new TypeError("the agent broke on purpose");
    default:
      throw AgentError.invalidInput(`unknown attack ${JSON.stringify(input && input.attack)}`);
  }
});
