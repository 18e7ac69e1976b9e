//! `liar` (hostile): implements the world with raw bindings, no SDK, and returns
//! text that is not JSON. The host must fail the run with `invalid_output`.

wit_bindgen::generate!({ world: "agent", path: "../../wit" });

struct Liar;

impl Guest for Liar {
    fn run(_input: String) -> Result<String, warden::agent::types::AgentError> {
        Ok("{this is not json".to_owned())
    }
}

export!(Liar);
