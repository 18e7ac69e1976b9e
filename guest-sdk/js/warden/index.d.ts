// Types of Warden's JavaScript SDK (index.js).

/** A typed failure: the execution ends `failed` with this code and message. */
export declare class AgentError extends Error {
  constructor(code: string, message: string);
  readonly code: string;
  static invalidInput(message: string): AgentError;
}

/** JSON as the host takes it in and gives it out. */
export type Json = null | boolean | number | string | Json[] | { [key: string]: Json };

/** Makes `fn(input) => output` the agent's `run` export: `export const run = agent(fn)`.
 * The function runs to its end synchronously (the host's imports block): not `async`. */
export declare function agent<I = Json, O = unknown>(fn: (input: I) => O): (input: string) => string;

export declare const log: {
  trace(message: unknown): void;
  debug(message: unknown): void;
  info(message: unknown): void;
  warn(message: unknown): void;
  error(message: unknown): void;
};

/** Records a step with a JSON detail; returns its number in the run. */
export declare function step(name: string, detail?: unknown): number;

export type Role = "system" | "user" | "assistant" | "tool";

export interface ToolCall {
  id: string;
  name: string;
  /** JSON text. */
  arguments: string;
  /** `arguments` parsed (null if it is not JSON). */
  args?: Json;
}

export interface Message {
  role: Role;
  content: string;
  toolCalls?: ToolCall[];
  toolCallId?: string | null;
}

export interface Tool {
  name: string;
  description: string;
  /** JSON Schema of the arguments. */
  parameters: Json;
}

export interface Usage {
  promptTokens: number;
  completionTokens: number;
  totalTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
}

export interface Completion {
  content: string;
  toolCalls: ToolCall[];
  usage: Usage;
  model: string;
  finishReason: "stop" | "length" | "tool_calls" | "content_filter" | "other";
}

export interface ChatOptions {
  /** A model of the manifest's; none: the run's (its default, or the one its caller picked). */
  model?: string;
  temperature?: number;
  maxTokens?: number;
  stop?: string[];
}

export declare const llm: {
  system(content: string): Message;
  user(content: string): Message;
  assistant(content: string): Message;
  assistantCalls(completion: Completion): Message;
  toolResult(callId: string, content: unknown): Message;
  tool(name: string, description: string, parameters: Json): Tool;
  /** Throws AgentError `model_not_allowed`, `budget_exceeded`, `llm_error` or `invalid_request`. */
  chat(messages: Message[], tools?: Tool[], options?: ChatOptions): Completion;
};

export declare const tools: {
  available(): { name: string; description: string; parameters: Json }[];
  /** Throws AgentError `tool_error`. */
  call<T = Json>(name: string, args?: Json): T;
};

export declare const artifacts: {
  /** Throws AgentError `artifact_error`. */
  put(name: string, mediaType: string, data: Uint8Array): string;
};

export type Decision =
  | { status: "approved"; data: Json }
  | { status: "rejected"; reason: string }
  | { status: "expired" };

export interface ApprovalOptions {
  /** Names of the keys that may decide; none: any admin or approver key. */
  approvers?: string[];
  timeoutSecs?: number;
}

export declare const approval: {
  ask(title: string, detail?: Json, options?: ApprovalOptions): Decision;
  /** Throws AgentError `rejected` or `approval_expired`. */
  require(title: string, detail?: Json, options?: ApprovalOptions): Json;
};

export declare const conversation: {
  id(): string | null;
  history(maxTurns?: number, maxTokens?: number): { messages: Message[]; truncated: boolean };
  messages(system: string, user: string): { messages: Message[]; truncated: boolean };
};

export interface Memory {
  get<T = Json>(key: string, fallback?: T): T;
  set(key: string, value: Json): void;
  delete(key: string): boolean;
  keys(prefix?: string): string[];
}

export declare const memory: {
  session(): Memory;
  store(name: string): Memory;
};

/** A refused or failed request: `code` names the `wasi:http` error
 * (`http_request_denied`, `destination_ip_prohibited`, `connection_refused`, ...). */
export declare class HttpError extends AgentError {}

/** A response's headers (names case-insensitive; repeated ones joined with `, `). */
export declare class Headers {
  get(name: string): string | null;
  has(name: string): boolean;
  entries(): IterableIterator<[string, string]>;
}

/** A whole response, read before `fetch` returns. */
export declare class Response {
  readonly status: number;
  /** A 2xx status. */
  readonly ok: boolean;
  readonly headers: Headers;
  bytes(): Uint8Array;
  text(): string;
  json<T = Json>(): T;
}

export interface RequestInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array | null;
  /** Most milliseconds to wait for the response to start (the host's cap applies too). */
  timeoutMs?: number;
}

/** Sends the agent's own HTTP request (`warden:agent/http`) and reads the whole response.
 * Synchronous, like every host import. The host sends it only when the manifest grants
 * `http_fetch`, only to its `allowed_hosts` (never to private addresses, no redirects,
 * within its caps) and
 * records it on the run as an `http` tool call; a refusal or failure throws `HttpError`. */
export declare function fetch(url: string, init?: RequestInit): Response;

export declare const http: { fetch: typeof fetch };
