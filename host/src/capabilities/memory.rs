//! `warden:agent/conversation` and `warden:agent/memory`: a turn's history
//! (the conversation's previous turns as chat messages, within a budget, with
//! `truncated` said aloud) and the memories a run may use (its conversation's
//! session memory and the stores attached to it). A durable run journals each
//! answer, so a replay reads what its earlier life read; writes are made again
//! on replay only if their answer was not journaled (setting a key twice to
//! the same value changes nothing).

use std::future::Future;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::ports::{Memories, MemoryError, Reach, Scope};
use crate::record::{JournalKind, TurnRole};
use crate::runtime::bindings::warden::agent::conversation::{self, Budget, Transcript};
use crate::runtime::bindings::warden::agent::llm::{Message, Role};
use crate::runtime::bindings::warden::agent::memory::{self, Error};
use crate::runtime::journal::{self, Replayed};
use crate::runtime::{RunState, Stop};

/// Most keys one `keys` call returns.
const MAX_KEYS: u32 = 1000;

/// One history message as the journal keeps it.
#[derive(Serialize, serde::Deserialize)]
struct Said {
    assistant: bool,
    content: String,
}

fn to_wit(e: MemoryError) -> Error {
    match e {
        MemoryError::Invalid(m) => Error::Invalid(m),
        MemoryError::LimitExceeded(m) => Error::LimitExceeded(m),
        MemoryError::Unavailable(m) => Error::Unavailable(m),
        MemoryError::Gone(m) => Error::NotAvailable(m),
    }
}

impl RunState {
    /// The memory a call names: the session's (none) or an attached store's.
    fn scope(&self, store: Option<&str>) -> Result<Scope, Error> {
        match store {
            None => self.grants.memory.session.clone().ok_or_else(|| {
                Error::NotAvailable("this run is not a turn of a conversation: it has no session memory".into())
            }),
            Some(name) => self
                .grants
                .memory
                .stores
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, scope)| scope.clone())
                .ok_or_else(|| Error::NotAvailable(format!("no memory store named {name:?} is attached to this run"))),
        }
    }

    /// Answers a call from the journal on replay; otherwise makes it (off the
    /// guest's fiber) and journals its answer.
    async fn journaled<T, F, M>(
        &mut self,
        fingerprint: Option<String>,
        what: &str,
        reach: Reach,
        make: M,
    ) -> wasmtime::Result<T>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        M: FnOnce() -> F + Send + 'static,
        F: Future<Output = T> + Send + 'static,
    {
        if let (Some(journal), Some(fingerprint)) = (&self.journal, &fingerprint)
            && let Some(Replayed::Done(data)) = journal
                .take(JournalKind::Memory, fingerprint, what)
                .map_err(wasmtime::Error::new)?
        {
            return serde_json::from_str(&data)
                .map_err(|e| wasmtime::Error::new(Stop::damaged_journal("memory call", &e)));
        }
        self.grants
            .effects
            .before_effect(reach)
            .await
            .map_err(Stop::unrecorded)?;
        let answer = super::off_fiber(make)
            .await
            .map_err(|e| wasmtime::Error::msg(format!("a memory call failed in the host: {e}")))?;
        if let (Some(journal), Some(fingerprint)) = (&self.journal, &fingerprint) {
            let data = serde_json::to_string(&answer).unwrap_or_default();
            journal
                .record(JournalKind::Memory, fingerprint, None, data)
                .map_err(wasmtime::Error::new)?;
        }
        Ok(answer)
    }

    /// The fingerprint of a call, for a durable run.
    fn fingerprint(&self, parts: &[&[u8]]) -> Option<String> {
        self.journal.as_ref().map(|_| journal::fingerprint(parts))
    }

    fn memories(&self) -> Arc<dyn Memories> {
        Arc::clone(&self.grants.memory.port)
    }
}

impl conversation::Host for RunState {
    fn id(&mut self) -> Option<String> {
        self.grants.memory.conversation_id.clone()
    }

    async fn history(&mut self, budget: Budget) -> wasmtime::Result<Transcript> {
        let Some(id) = self.grants.memory.conversation_id.clone() else {
            return Ok(Transcript {
                messages: Vec::new(),
                truncated: false,
            });
        };
        let (turns, tokens) = self.grants.memory.history_budget;
        let max_turns = budget.max_turns.map_or(turns, |t| t.min(turns));
        let max_tokens = budget.max_tokens.map_or(tokens, |t| u64::from(t).min(tokens));
        let port = self.memories();
        let fingerprint = self.fingerprint(&[b"history", format!("{max_turns}/{max_tokens}").as_bytes()]);
        let answer: Result<(Vec<Said>, bool), MemoryError> = self
            .journaled(
                fingerprint,
                "the conversation's history",
                Reach::Nothing,
                move || async move {
                    let (turns, truncated) = port.history(&id, max_turns, max_tokens).await?;
                    let said = turns
                        .into_iter()
                        .map(|t| Said {
                            assistant: t.role == TurnRole::Assistant,
                            content: t.content,
                        })
                        .collect();
                    Ok((said, truncated))
                },
            )
            .await?;
        // A history the store cannot give fails the run: it must not go on
        // believing the conversation is new.
        let (said, truncated) = answer.map_err(|e| {
            wasmtime::Error::new(Stop {
                code: "storage_unavailable",
                message: format!("could not read the conversation's history: {e}"),
            })
        })?;
        Ok(Transcript {
            messages: said
                .into_iter()
                .map(|s| Message {
                    role: if s.assistant { Role::Assistant } else { Role::User },
                    content: s.content,
                    tool_calls: Vec::new(),
                    tool_call_id: None,
                })
                .collect(),
            truncated,
        })
    }
}

impl memory::Host for RunState {
    async fn get(&mut self, store: Option<String>, key: String) -> wasmtime::Result<Result<Option<String>, Error>> {
        let scope = match self.scope(store.as_deref()) {
            Ok(scope) => scope,
            Err(e) => return Ok(Err(e)),
        };
        let port = self.memories();
        let what = format!("memory get {key:?}");
        let fingerprint = self.fingerprint(&[b"get", scope.id.as_bytes(), key.as_bytes()]);
        let answer: Result<Option<String>, MemoryError> = self
            .journaled(fingerprint, &what, Reach::Nothing, move || async move {
                port.get(&scope, &key).await
            })
            .await?;
        Ok(answer.map_err(to_wit))
    }

    async fn set(&mut self, store: Option<String>, key: String, value: String) -> wasmtime::Result<Result<(), Error>> {
        let scope = match self.scope(store.as_deref()) {
            Ok(scope) => scope,
            Err(e) => return Ok(Err(e)),
        };
        let port = self.memories();
        let what = format!("memory set {key:?}");
        let fingerprint = self.fingerprint(&[b"set", scope.id.as_bytes(), key.as_bytes(), value.as_bytes()]);
        let answer: Result<(), MemoryError> = self
            .journaled(fingerprint, &what, Reach::Store, move || async move {
                port.put(&scope, &key, &value).await
            })
            .await?;
        Ok(answer.map_err(to_wit))
    }

    async fn delete(&mut self, store: Option<String>, key: String) -> wasmtime::Result<Result<bool, Error>> {
        let scope = match self.scope(store.as_deref()) {
            Ok(scope) => scope,
            Err(e) => return Ok(Err(e)),
        };
        let port = self.memories();
        let what = format!("memory delete {key:?}");
        let fingerprint = self.fingerprint(&[b"delete", scope.id.as_bytes(), key.as_bytes()]);
        let answer: Result<bool, MemoryError> = self
            .journaled(fingerprint, &what, Reach::Store, move || async move {
                port.remove(&scope, &key).await
            })
            .await?;
        Ok(answer.map_err(to_wit))
    }

    async fn keys(&mut self, store: Option<String>, prefix: String) -> wasmtime::Result<Result<Vec<String>, Error>> {
        let scope = match self.scope(store.as_deref()) {
            Ok(scope) => scope,
            Err(e) => return Ok(Err(e)),
        };
        let port = self.memories();
        let fingerprint = self.fingerprint(&[b"keys", scope.id.as_bytes(), prefix.as_bytes()]);
        let answer: Result<Vec<String>, MemoryError> = self
            .journaled(fingerprint, "memory keys", Reach::Nothing, move || async move {
                port.keys(&scope, &prefix, MAX_KEYS).await
            })
            .await?;
        Ok(answer.map_err(to_wit))
    }
}
