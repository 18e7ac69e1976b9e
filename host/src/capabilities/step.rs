//! `warden:agent/step`: named steps into the run record.

use crate::runtime::RunState;
use crate::runtime::bindings::warden::agent::step::Host;

impl Host for RunState {
    fn add(&mut self, name: String, detail: String) -> u32 {
        self.record.step(name, detail)
    }
}
