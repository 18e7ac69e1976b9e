//! `warden:agent/log`: guest log lines into the run record.

use crate::record::LogLevel;
use crate::runtime::RunState;
use crate::runtime::bindings::warden::agent::log::{Host, Level};

impl From<Level> for LogLevel {
    fn from(level: Level) -> Self {
        match level {
            Level::Trace => LogLevel::Trace,
            Level::Debug => LogLevel::Debug,
            Level::Info => LogLevel::Info,
            Level::Warn => LogLevel::Warn,
            Level::Error => LogLevel::Error,
        }
    }
}

impl Host for RunState {
    fn write(&mut self, level: Level, message: String) {
        self.record.log(level.into(), message);
    }
}
