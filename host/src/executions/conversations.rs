//! Conversations, the use cases: one turn at a time per conversation (a turn
//! asked for while another is under way is queued, held until the turns
//! before it are over, or is refused `conversation_busy`), starting and continuing conversations on execute,
//! "continue as chat" from a finished execution, deleting one (never under a
//! turn), and the retention sweep of inactive ones. The turns themselves are
//! added with a completed turn's final record ([`super::lifecycle`]).

use std::sync::Arc;
use std::time::Duration;

use serde_json::value::RawValue;

use super::{Executions, SubmitError};
use crate::record::{Conversation, ExecError, Execution, Status, Turn, TurnRole, assistant_text, user_text};
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IfBusy {
    /// Is queued at once and runs when every turn asked for before it is over.
    Wait,
    /// Is refused (`conversation_busy`).
    Refuse,
    /// Takes the place of the turn with this key: a retry its agent's policy
    /// makes of a turn that failed.
    Follow(String),
}

/// A turn asked for on execute.
pub struct TurnRequest {
    pub conversation: ConversationRef,
    pub if_busy: IfBusy,
    /// Session memory to set when the turn starts: keys and JSON values.
    pub session: Vec<(String, String)>,
}

/// Locks that placing turns of the same conversation takes: a turn's place is
/// decided and its record committed under it, so the store always knows every
/// turn placed before.
pub(super) struct Turns {
    stripes: Vec<tokio::sync::Mutex<()>>,
}

impl Default for Turns {
    fn default() -> Self {
        Self {
            stripes: (0..STRIPES).map(|_| tokio::sync::Mutex::new(())).collect(),
        }
    }
}

impl Turns {
    fn stripe(&self, conversation: &str) -> &tokio::sync::Mutex<()> {
        let hash = conversation
            .bytes()
            .fold(0usize, |h, b| h.wrapping_mul(31).wrapping_add(b as usize));
        &self.stripes[hash % STRIPES]
    }
}

/// Where a new turn goes.
pub(super) struct Place<'a> {
    /// Held until the turn's record is committed.
    pub _claim: tokio::sync::MutexGuard<'a, ()>,
    /// The same, across hosts (a store several hosts share).
    pub hold: Option<Box<dyn crate::store::TurnHold>>,
    /// Its turn key, when it is not its own id.
    pub key: Option<String>,
    /// The key of the last turn under way when it was placed.
    pub last: Option<String>,
    /// Other turns come before it: it is held until they are over.
    pub waits: bool,
}

impl Place<'_> {
    /// The turn key of the turn `id` placed here: its own id, unless that
    /// would not order it after every turn under way (an id made before the
    /// place, or on another host's clock); then just after the last.
    pub fn key_for(&self, id: &str) -> String {
        match (&self.key, &self.last) {
            (Some(key), _) => key.clone(),
            (None, Some(last)) if last.as_str() >= id => format!("{last}+"),
            (None, _) => id.to_owned(),
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

/// How often a turn held behind another looks at the turns before it again
/// (it also wakes when the one just before it ends).
const TURN_POLL: Duration = Duration::from_millis(500);

impl Executions {
    /// A turn's conversation, when it continues one: of this workspace and
    /// this agent; its session values checked.
    pub(super) async fn check_turn(
        &self,
        workspace: &str,
        agent_id: &str,
        turn: Option<&TurnRequest>,
    ) -> Result<Option<String>, SubmitError> {
        let Some(turn) = turn else { return Ok(None) };
        for (key, value) in &turn.session {
            self.memory.check(key, value)?;
        }
        let ConversationRef::Continue(id) = &turn.conversation else {
            return Ok(None);
        };
        let conversation = self
            .conversation(workspace, id)
            .await?
            .ok_or_else(|| SubmitError::ConversationNotFound(id.clone()))?;
        if conversation.agent_id != agent_id {
            return Err(SubmitError::ConversationAgent {
                conversation: id.clone(),
                agent: conversation.agent_id,
            });
        }
        Ok(Some(conversation.id))
    }

    /// Places a new turn of `conversation` (or refuses it, as `if_busy` says).
    pub(super) async fn place_turn(&self, conversation: &str, if_busy: &IfBusy) -> Result<Place<'_>, SubmitError> {
        let claim = self.turns.stripe(conversation).lock().await;
        let hold = self.conversations.hold_turns(conversation).await?;
        // A policy retry takes the failed turn's place (held all the same:
        // a delete on another host waits for it to be stored).
        if let IfBusy::Follow(key) = if_busy {
            return Ok(Place {
                _claim: claim,
                hold,
                key: Some(key.clone()),
                last: None,
                waits: false,
            });
        }
        // Read on the hold's own connection, if held (no second one waited for).
        let under_way = match &hold {
            Some(hold) => hold.turns_under_way().await?,
            None => self.conversations.turns_under_way(conversation).await?,
        };
        if let (Some((execution, _)), IfBusy::Refuse) = (under_way.last(), if_busy) {
            if let Some(hold) = hold {
                hold.release().await;
            }
            return Err(SubmitError::ConversationBusy {
                conversation: conversation.to_owned(),
                execution: execution.clone(),
            });
        }
        Ok(Place {
            _claim: claim,
            hold,
            key: None,
            last: under_way.last().map(|(_, key)| key.clone()),
            waits: !under_way.is_empty(),
        })
    }

    /// A turn held until every turn before it (by turn key) is over, then
    /// its delay, if it has one; then queued (on a store several hosts
    /// share, once its agent has a slot across them). Looks again whenever the turn
    /// just before it ends, so a turn cancelled before it ran, or a retry
    /// that takes a failed turn's place, is waited for as the store has it.
    pub(super) fn after_turn(self: &Arc<Self>, id: String, conversation: String, key: String, delay: Option<Duration>) {
        let executions = Arc::downgrade(self);
        let deadline = delay.map(|d| tokio::time::Instant::now() + d);
        tokio::spawn(async move {
            loop {
                let Some(this) = executions.upgrade() else { return };
                // Closing: it stays queued in the store; a restart places it again.
                if *this.closing.borrow() {
                    return;
                }
                let before = match this.conversations.turns_under_way(&conversation).await {
                    Ok(turns) => turns
                        .into_iter()
                        .rfind(|(t, k)| (k, t) < (&key, &id))
                        .map(|(t, _)| Some(t)),
                    Err(e) => {
                        tracing::warn!(execution = %id, error = %e, "could not read the turns before this one");
                        Some(None)
                    }
                };
                let Some(before) = before else { break };
                let done = before.and_then(|b| this.watch(&b));
                drop(this);
                match done {
                    Some(mut done) => {
                        let over = done.wait_for(|e| e.as_ref().is_some_and(|e| e.status.is_terminal()));
                        let _ = tokio::time::timeout(TURN_POLL, over).await;
                    }
                    None => tokio::time::sleep(TURN_POLL).await,
                }
            }
            if let Some(deadline) = deadline {
                tokio::time::sleep_until(deadline).await;
            }
            if let Some(this) = executions.upgrade() {
                this.turn_ready(&id);
            }
        });
    }

    /// Sets the session memory a turn's request asked for, as the turn
    /// starts (after the turns before it).
    pub(super) async fn set_session(&self, execution: &Execution) -> Result<(), ExecError> {
        let (Some(conversation), Some(values)) = (&execution.conversation_id, &execution.session_set) else {
            return Ok(());
        };
        let values: serde_json::Map<String, serde_json::Value> = serde_json::from_str(values.get()).unwrap_or_default();
        let scope = self.memory.session(conversation);
        for (key, value) in values {
            self.memory
                .set(&scope, &key, &value.to_string())
                .await
                .map_err(|e| ExecError::host("memory_error", format!("setting session memory {key:?}: {e}")))?;
        }
        Ok(())
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
        self.new_conversation(workspace, &entry.agent.id, metadata, Vec::new(), 0)
            .await
    }

    /// Creates a conversation (with its first turns) and waits until it is stored.
    pub(super) async fn new_conversation(
        &self,
        workspace: &str,
        agent_id: &str,
        metadata: Option<Arc<RawValue>>,
        turns: Vec<Turn>,
        token_count: u64,
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
            token_count,
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
        self.new_conversation(
            workspace,
            &execution.agent_id,
            metadata,
            vec![user, answer],
            execution.token_usage.total,
        )
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
        // Held as a new turn is placed (on a shared store, across hosts too),
        // so no turn starts between the look and the delete.
        let _claim = self.turns.stripe(id).lock().await;
        let hold = self.conversations.hold_turns(id).await?;
        let under_way = match &hold {
            Some(hold) => hold.turns_under_way().await,
            None => self.conversations.turns_under_way(id).await,
        };
        let deleted = match under_way {
            Ok(mut turns) => match turns.pop() {
                Some((execution, _)) => Err(ConversationError::Busy {
                    conversation: id.to_owned(),
                    execution,
                }),
                None => self.conversations.delete(id).await.map_err(ConversationError::from),
            },
            Err(e) => Err(e.into()),
        };
        if let Some(hold) = hold {
            hold.release().await;
        }
        deleted
    }
}
