//! Conversations, the use cases: one turn at a time per conversation (a turn
//! asked for while another is under way waits for its end, or is refused
//! `conversation_busy`), starting and continuing conversations on execute,
//! "continue as chat" from a finished execution, deleting one (never under a
//! turn), and the retention sweep of inactive ones. The turns themselves are
//! added with a completed turn's final record ([`super::lifecycle`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde_json::value::RawValue;

use super::{Executions, SubmitError};
use crate::record::{Conversation, Status, Turn, TurnRole, assistant_text, user_text};
use crate::store::StoreError;
use crate::{ids, time};

/// Locks that claims of a turn of the same conversation share.
const STRIPES: usize = 32;

/// Which conversation an execution is a turn of.
pub enum ConversationRef {
    /// A new one, with this metadata.
    Start(Option<Arc<RawValue>>),
    /// An existing one, by id.
    Continue(String),
}

/// What a turn does when another turn of its conversation is under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfBusy {
    /// Waits for that turn to end.
    Wait,
    /// Is refused (`conversation_busy`).
    Refuse,
    /// Takes it over: a retry its agent's policy makes of a turn that failed.
    Follow,
}

/// A turn asked for on execute.
pub struct TurnRequest {
    pub conversation: ConversationRef,
    pub if_busy: IfBusy,
    /// Session memory to set first: keys and JSON values.
    pub session: Vec<(String, String)>,
}

/// The turns under way that this host made, by conversation (a turn is
/// committed a moment after it is made; the store knows of it after that).
#[derive(Default)]
pub(super) struct Turns {
    held: Mutex<Held>,
    stripes: [tokio::sync::Mutex<()>; STRIPES],
}

#[derive(Default)]
struct Held {
    by_conversation: HashMap<String, String>,
    by_execution: HashMap<String, String>,
}

impl Turns {
    fn stripe(&self, conversation: &str) -> &tokio::sync::Mutex<()> {
        let hash = conversation
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.stripes[hash % STRIPES]
    }

    fn holder(&self, conversation: &str) -> Option<String> {
        let held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        held.by_conversation.get(conversation).cloned()
    }

    pub(super) fn hold(&self, conversation: &str, execution: &str) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = held
            .by_conversation
            .insert(conversation.to_owned(), execution.to_owned())
        {
            held.by_execution.remove(&old);
        }
        held.by_execution.insert(execution.to_owned(), conversation.to_owned());
    }

    /// An execution ended: its turn is over.
    pub(super) fn release(&self, execution: &str) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(conversation) = held.by_execution.remove(execution)
            && held.by_conversation.get(&conversation).is_some_and(|e| e == execution)
        {
            held.by_conversation.remove(&conversation);
        }
    }
}

/// Why a conversation could not be deleted or continued.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    #[error("no conversation {0:?}")]
    NotFound(String),
    #[error("no execution {0:?}")]
    ExecutionNotFound(String),
    #[error("execution {id} is {status}; only a completed execution can be continued as a chat")]
    NotCompleted { id: String, status: &'static str },
    #[error("conversation {conversation} has a turn under way (execution {execution}); try again when it ends")]
    Busy { conversation: String, execution: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Executions {
    /// Whether an execution has not ended (live here, or stored unfinished).
    async fn unfinished(&self, id: &str) -> Result<bool, StoreError> {
        if let Some(done) = self.watch(id) {
            return Ok(done.borrow().as_ref().is_none_or(|e| !e.status.is_terminal()));
        }
        Ok(self.store.get(id).await?.is_some_and(|e| !e.status.is_terminal()))
    }

    /// The turn under way in a conversation, if any.
    async fn turn_under_way(&self, conversation: &str) -> Result<Option<String>, StoreError> {
        if let Some(holder) = self.turns.holder(conversation)
            && self.unfinished(&holder).await?
        {
            return Ok(Some(holder));
        }
        self.conversations.active_turn(conversation).await
    }

    /// Waits until no turn of `conversation` is under way (or refuses, as
    /// `if_busy` says); returns holding the conversation's claim lock: the
    /// caller makes its turn, records it with [`Turns::hold`], then lets go.
    pub(super) async fn take_turn(
        &self,
        conversation: &str,
        if_busy: IfBusy,
    ) -> Result<tokio::sync::MutexGuard<'_, ()>, SubmitError> {
        loop {
            let claim = self.turns.stripe(conversation).lock().await;
            if if_busy == IfBusy::Follow {
                return Ok(claim);
            }
            let Some(holder) = self.turn_under_way(conversation).await? else {
                return Ok(claim);
            };
            drop(claim);
            if if_busy == IfBusy::Refuse {
                return Err(SubmitError::ConversationBusy {
                    conversation: conversation.to_owned(),
                    execution: holder,
                });
            }
            // Its end (a lost record counts as one).
            let _ = self.child_outcome(&holder).await;
        }
    }

    /// A conversation of `workspace`, by id.
    pub async fn conversation(&self, workspace: &str, id: &str) -> Result<Option<Conversation>, StoreError> {
        Ok(self.conversations.get(id).await?.filter(|c| c.workspace == workspace))
    }

    /// Starts a conversation with `agent` (by id or name) of `workspace`.
    pub async fn start_conversation(
        &self,
        workspace: &str,
        agent: &str,
        metadata: Option<Arc<RawValue>>,
    ) -> Result<Conversation, SubmitError> {
        let entry = self
            .registry
            .get(workspace, agent)
            .ok_or_else(|| SubmitError::AgentNotFound(agent.to_owned()))?;
        self.new_conversation(workspace, &entry.agent.id, metadata, Vec::new())
            .await
    }

    /// Creates a conversation (with its first turns) and waits until it is stored.
    pub(super) async fn new_conversation(
        &self,
        workspace: &str,
        agent_id: &str,
        metadata: Option<Arc<RawValue>>,
        turns: Vec<Turn>,
    ) -> Result<Conversation, SubmitError> {
        let metadata = match metadata {
            Some(m) if m.get().starts_with('{') && crate::json_text::check(m.get()).is_ok() => m,
            Some(_) => return Err(SubmitError::InvalidMetadata),
            None => crate::json_text::raw("{}".to_owned())
                .map_err(|e| SubmitError::Store(StoreError::Write(e.to_string())))?
                .into(),
        };
        let now = time::now_ms();
        let conversation = Conversation {
            id: ids::conversation(),
            workspace: workspace.to_owned(),
            agent_id: agent_id.to_owned(),
            turn_count: turns.len() as u32,
            token_count: 0,
            metadata,
            created_at: now,
            last_active_at: now,
        };
        self.conversations.create(conversation.clone(), turns).await?;
        Ok(conversation)
    }

    /// "Continue as chat": a conversation whose first turn is a completed
    /// execution (its input and its output), ready for the next message.
    pub async fn continue_as_chat(&self, workspace: &str, id: &str) -> Result<Conversation, ConversationError> {
        let execution = self
            .store
            .get(id)
            .await?
            .ok_or_else(|| ConversationError::ExecutionNotFound(id.to_owned()))?;
        let output = match (&execution.output, execution.status) {
            (Some(output), Status::Completed) => output,
            _ => {
                return Err(ConversationError::NotCompleted {
                    id: id.to_owned(),
                    status: execution.status.as_str(),
                });
            }
        };
        let at = execution.completed_at.unwrap_or(execution.created_at);
        let user = Turn::new(TurnRole::User, user_text(&execution.input), id, execution.created_at);
        let mut answer = Turn::new(TurnRole::Assistant, assistant_text(output), id, at);
        answer.tool_calls = execution.tool_calls.clone();
        let metadata = format!(r#"{{"continued_from":"{id}"}}"#);
        let metadata = crate::json_text::raw(metadata).ok().map(Into::into);
        self.new_conversation(workspace, &execution.agent_id, metadata, vec![user, answer])
            .await
            .map_err(|e| match e {
                SubmitError::Store(e) => ConversationError::Store(e),
                other => ConversationError::Store(StoreError::Write(other.to_string())),
            })
    }

    /// Deletes a conversation with its turns and session memory; refused while
    /// a turn is under way.
    pub async fn delete_conversation(&self, workspace: &str, id: &str) -> Result<(), ConversationError> {
        if self.conversation(workspace, id).await?.is_none() {
            return Err(ConversationError::NotFound(id.to_owned()));
        }
        let _claim = self.turns.stripe(id).lock().await;
        if let Some(execution) = self.turn_under_way(id).await? {
            return Err(ConversationError::Busy {
                conversation: id.to_owned(),
                execution,
            });
        }
        self.conversations.delete(id).await?;
        Ok(())
    }
}
