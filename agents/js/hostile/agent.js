// `hostile-js` (hostile): what a JavaScript guest must not get away with, by
// `attack`: `loop` spins forever, `allocate` grows memory without end,
// `snoop` looks for ways out of the sandbox (environment, files, network,
// processes) and returns which exist, `raise` throws an error of its own.

import { AgentError, agent, log } from "warden";

function snoop() {
  const found = [];
  for (const name of ["process", "require", "Deno", "Bun", "fetch", "XMLHttpRequest", "WebSocket", "std", "os"]) {
    if (typeof globalThis[name] !== "undefined") found.push(name);
  }
  return { globals: found };
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
