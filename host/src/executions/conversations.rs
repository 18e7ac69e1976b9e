//! Conversations, the use cases: one turn at a time per conversation (a turn
//! asked for while another is under way is queued, held until the turns
//! before it are over, or is refused `conversation_busy`), starting and continuing conversations on execute,
//! "continue as chat" from a finished execution, deleting one (never under a
//! turn), and the retention sweep of inactive ones. The turns themselves are
//! added with a completed turn's final record ([`super::lifecycle`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

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
    /// Is queued at once and runs when that turn (and every turn asked for
    /// before it) is over.
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

    /// `execution` is the conversation's newest turn.
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

    /// A retry takes over the turn of the execution it retries, if that is
    /// still the conversation's newest.
    pub(super) fn take_over(&self, conversation: &str, original: &str, retry: &str) {
        if self.holder(conversation).is_some_and(|h| h == original) {
            self.hold(conversation, retry);
        }
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

/// How often a turn waiting for one unloaded (awaiting an approval) looks
/// again.
const TURN_POLL: Duration = Duration::from_millis(500);

impl Executions {
    /// Whether an execution has not ended (live here, or stored unfinished).
    async fn unfinished(&self, id: &str) -> Result<bool, StoreError> {
        if let Some(done) = self.watch(id) {
            return Ok(done.borrow().as_ref().is_none_or(|e| !e.status.is_terminal()));
        }
        Ok(self.store.get(id).await?.is_some_and(|e| !e.status.is_terminal()))
    }

    /// The newest turn of a conversation that has not ended, if any.
    async fn newest_turn(&self, conversation: &str) -> Result<Option<String>, StoreError> {
        if let Some(holder) = self.turns.holder(conversation)
            && self.unfinished(&holder).await?
        {
            return Ok(Some(holder));
        }
        Ok(self.conversations.turns_under_way(conversation).await?.pop())
    }

    /// Places a new turn of `conversation`: returns holding the
    /// conversation's claim lock (the caller makes its turn, records it with
    /// [`Turns::hold`], then lets go) and the turn it comes after, which it
    /// waits for ([`Executions::after_turn`]); or refuses, as `if_busy` says.
    pub(super) async fn place_turn(
        &self,
        conversation: &str,
        if_busy: IfBusy,
    ) -> Result<(tokio::sync::MutexGuard<'_, ()>, Option<String>), SubmitError> {
        let claim = self.turns.stripe(conversation).lock().await;
        if if_busy == IfBusy::Follow {
            return Ok((claim, None));
        }
        let before = self.newest_turn(conversation).await?;
        if let (Some(execution), IfBusy::Refuse) = (&before, if_busy) {
            return Err(SubmitError::ConversationBusy {
                conversation: conversation.to_owned(),
                execution: execution.clone(),
            });
        }
        Ok((claim, before))
    }

    /// Waits until turn `id` is over: ended, and (when its agent's policy
    /// retried it) its retries too.
    async fn turn_over(&self, mut id: String) {
        loop {
            let ended = match self.watch(&id) {
                Some(mut done) => done.wait_for(Option::is_some).await.ok().and_then(|e| e.clone()),
                None => match self.store.get(&id).await {
                    Ok(Some(stored)) => Some(Arc::new(stored)),
                    // A turn with no record is no turn.
                    Ok(None) => return,
                    Err(_) => None,
                },
            };
            match ended {
                Some(e) if e.status.is_terminal() => match (&e.status, &e.retried_by) {
                    (Status::Failed, Some(next)) => id = next.clone(),
                    _ => return,
                },
                // Unloaded while it waits for a decision, or storage failing.
                _ => tokio::time::sleep(TURN_POLL).await,
            }
        }
    }

    /// A turn held until the one before it is over (then its delay, if it
    /// has one), then queued.
    pub(super) fn after_turn(self: &Arc<Self>, id: String, before: String, delay: Option<Duration>) {
        let this = Arc::clone(self);
        tokio::spawn(async move {
            this.turn_over(before).await;
            if let Some(delay) = delay {
                tokio::time::sleep(delay).await;
            }
            this.launch(this.scheduler.end_delay(&id));
        });
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
        if let Some(execution) = self.newest_turn(id).await? {
            return Err(ConversationError::Busy {
                conversation: id.to_owned(),
                execution,
            });
        }
        self.conversations.delete(id).await?;
        Ok(())
    }
}
