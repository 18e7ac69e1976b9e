//! End-to-end tests: one binary, a module per area. Each test starts a real server
//! on 127.0.0.1:0 with its own data dir and deploys real components.

/// Names the test that runs an agent of `agents/`: `covers!(chatty => a_test);`
/// in the test's module.
macro_rules! covers {
    ($($agent:ident => $test:ident),+ $(,)?) => {
        pub(crate) mod tested {
            $(
                #[allow(non_upper_case_globals, reason = "named after the agent")]
                pub(crate) const $agent: fn() = super::$test;
            )+
        }
    };
}

mod approvals;
mod architecture;
mod artifacts;
mod auth;
mod bad_input;
mod cli;
mod containment;
mod conversations;
mod disk;
mod durable;
mod events;
mod execute;
mod guest_http;
mod hostile;
mod javascript;
mod listing;
mod litellm;
mod llm;
mod mcp;
mod mcp_guests;
mod mcp_tasks;
mod metrics;
mod openapi;
mod postgres;
mod python;
mod recovery;
mod requests;
mod restart;
mod run_log;
mod sandbox;
mod scale_out;
mod schedules;
mod scheduling;
mod shared_queue;
mod shutdown;
mod store;
mod store_conversations;
mod store_triggers;
mod summary;
mod tools;
mod trace;
mod ui;
mod ui_scale;
mod webhooks;

// The allocator the `warden` binary runs with.
warden_host::use_mimalloc!();

/// Every agent under `agents/` has a test: `foreach_agent!` lists them all (made
/// from the folder by the host's build script), and this does not compile until
/// each is named by a `covers!` next to its test.
mod fixtures {
    use crate::{
        approvals, artifacts, bad_input, conversations, durable, events, execute, hostile, llm, recovery, sandbox,
        tools,
    };
    use {approvals::tested::*, conversations::tested::*, durable::tested::*};
    use {artifacts::tested::*, bad_input::tested::*, events::tested::*, execute::tested::*};
    use {hostile::tested::*, llm::tested::*, recovery::tested::*, sandbox::tested::*, tools::tested::*};

    macro_rules! has_a_test {
        ($agent:ident) => {
            const _: fn() = $agent;
        };
    }
    warden_host::foreach_agent!(has_a_test);
}
