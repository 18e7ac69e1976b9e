// The SDK's typed failure, shared by its modules.

/** A typed failure: the execution ends `failed` with this code and message. */
export class AgentError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.name = "AgentError";
    this.code = code;
    this.message = message;
  }

  static invalidInput(message) {
    return new AgentError("invalid_input", message);
  }
}
