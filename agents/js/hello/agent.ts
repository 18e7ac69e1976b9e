// `hello` in TypeScript: the twin of the Rust `hello` agent. Typed input and
// output; more than 10 greetings fail with `too_many`.

import { AgentError, agent, log, step } from "warden";

interface Input {
  name: string;
  times?: number;
}

interface Output {
  greeting: string;
}

export const run = agent((input: Input): Output => {
  const times = input.times ?? 1;
  if (times > 10) {
    throw new AgentError("too_many", "at most 10 greetings");
  }
  log.info(`greeting ${input.name} ${times} time(s)`);
  step("greet", { name: input.name, times });
  return { greeting: Array(times).fill(`Hello, ${input.name}!`).join(" ") };
});
