//! Records: what Warden stores and shows (executions and what their runs leave
//! behind, agents, their versions and deploys, API keys). Plain data with its serialised
//! form; nothing here stores, schedules or runs anything.

mod agent;
mod approval;
mod conversation;
mod deploy;
mod execution;
mod hook;
mod journal;
mod key;
mod run;
mod schedule;
mod summary;

pub use self::agent::{Agent, AgentVersion};
pub use self::approval::{Approval, ApprovalStatus, Decision};
pub use self::conversation::{
    Conversation, MemoryEntry, MemoryStoreInfo, Turn, TurnRole, assistant_text, estimate_tokens, user_text,
};
pub use self::deploy::{DeployJob, Deployed, JobError, JobStatus};
pub use self::execution::{ErrorSource, ExecError, Execution, ExecutionView, Status, Timing, Trigger};
pub use self::hook::{Attempt, Delivery, DeliveryStatus, Hook, Subscription, WEBHOOK_EVENTS};
pub use self::journal::{JournalEntry, JournalKind};
pub use self::key::{ApiKey, Role};
pub use self::run::{Artifact, LogLevel, LogLine, LogStream, Step, ToolCallRecord, Usage};
pub use self::schedule::{Overlap, Schedule};
pub use self::summary::{AgentSummary, Durations, ErrorCount, LastRun};
