//! The MCP protocol handler: who calls (the API key's [`Caller`], put on the
//! request by the authentication middleware), the tool list of the caller's
//! workspace, calls dispatched to the execution tools or the agents, the tasks
//! methods, and `tools/list_changed` on deploys: to handshake sessions (on
//! their stream) and to `subscriptions/listen` streams.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams, ContentBlock, Extensions, GetTaskParams,
    GetTaskResult, Implementation, ListToolsResult, PaginatedRequestParams, ServerCapabilities, ServerConfig,
    SubscriptionFilter, UpdateTaskParams,
};
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData, Peer, RoleServer, ServerHandler};
use tokio::sync::broadcast::error::RecvError;

use crate::app::App;
use crate::auth::Caller;
use crate::record::Role;

/// Longest one session's list-changed notification may take to send.
const NOTIFY_TIMEOUT: Duration = Duration::from_secs(2);

const INSTRUCTIONS: &str = "Each tool runs a Warden agent of your workspace (its input is the tool's \
arguments) and answers with the agent's output; a long run becomes a task when the client takes tasks. \
list_recent_executions, get_execution_result and get_agent_activity_summary read what agents did.";

/// The handshake sessions open, with their workspaces.
type Sessions = Arc<Mutex<Vec<(String, Peer<RoleServer>)>>>;

/// What every request's handler shares: the app and the handshake sessions
/// told about deploys.
pub struct Shared {
    pub(super) app: Arc<App>,
    sessions: Sessions,
    /// What the server says of itself (asked for several times a request).
    info: ServerConfig,
}

impl Shared {
    pub fn new(app: Arc<App>) -> Self {
        let sessions: Sessions = Arc::default();
        let told = Arc::clone(&sessions);
        let mut deploys = app.registry.deploys();
        let mut closing = app.executions.closing();
        tokio::spawn(async move {
            loop {
                // `None`: deploys were missed, so every session is told.
                let workspace = tokio::select! {
                    deployed = deploys.recv() => match deployed {
                        Ok(w) => Some(w),
                        Err(RecvError::Lagged(_)) => None,
                        Err(RecvError::Closed) => return,
                    },
                    _ = closing.wait_for(|c| *c) => return,
                };
                let peers: Vec<Peer<RoleServer>> = {
                    let mut sessions = told.lock().unwrap_or_else(PoisonError::into_inner);
                    sessions.retain(|(_, peer)| !peer.is_transport_closed());
                    sessions
                        .iter()
                        .filter(|(w, _)| workspace.as_ref().is_none_or(|d| d == w))
                        .map(|(_, peer)| peer.clone())
                        .collect()
                };
                let told = peers
                    .iter()
                    .map(|peer| tokio::time::timeout(NOTIFY_TIMEOUT, peer.notify_tool_list_changed()));
                futures_util::future::join_all(told).await;
            }
        });
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_tasks()
            .build();
        let info = ServerConfig::new(capabilities)
            .with_server_info(Implementation::new("warden", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS);
        Self { app, sessions, info }
    }
}

/// One session's (or one stateless request's) handler.
#[derive(Clone)]
pub struct Mcp {
    shared: Arc<Shared>,
}

impl Mcp {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }

    fn app(&self) -> &Arc<App> {
        &self.shared.app
    }
}

/// The caller the authentication middleware put on the HTTP request.
pub(super) fn caller(extensions: &Extensions) -> Result<Caller, ErrorData> {
    extensions
        .get::<axum::http::request::Parts>()
        .and_then(|parts| parts.extensions.get::<Caller>())
        .cloned()
        .ok_or_else(|| ErrorData::internal_error("the request reached MCP unauthenticated", None))
}

/// A failed tool call, as the client's model should see it.
pub(super) fn tool_error(message: impl Into<String>) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message.into())])
}

impl ServerHandler for Mcp {
    fn get_info(&self) -> ServerConfig {
        self.shared.info.clone()
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        if let Ok(caller) = caller(&context.extensions) {
            let mut sessions = self.shared.sessions.lock().unwrap_or_else(PoisonError::into_inner);
            sessions.retain(|(_, peer)| !peer.is_transport_closed());
            sessions.push((caller.workspace, context.peer));
        }
    }

    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        let filter = SubscriptionFilter::builder();
        Some(if requested.tools_list_changed == Some(true) {
            filter.tools_list_changed().build()
        } else {
            filter.build()
        })
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        let caller = caller(&context.request_context().extensions)?;
        if context.accepted().tools_list_changed != Some(true) {
            context.cancelled().await;
            return Ok(());
        }
        let mut deploys = self.app().registry.deploys();
        loop {
            tokio::select! {
                () = context.cancelled() => return Ok(()),
                deployed = deploys.recv() => match deployed {
                    Ok(w) if w != caller.workspace => continue,
                    Ok(_) | Err(RecvError::Lagged(_)) => {}
                    Err(RecvError::Closed) => return Ok(()),
                },
            }
            if context.sink().notify_tool_list_changed().await.is_err() {
                return Ok(());
            }
        }
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let caller = caller(&context.extensions)?;
        let mut tools = super::executions::tools();
        if caller.role != Role::Approver {
            tools.extend(super::agents::tools(self.app(), &caller.workspace));
        }
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let caller = caller(&context.extensions)?;
        let arguments = request.arguments.unwrap_or_default();
        if let Some(result) = super::executions::call(self.app(), &caller, &request.name, &arguments).await {
            return Ok(result.into());
        }
        if caller.role == Role::Approver {
            return Ok(
                tool_error("an approver key reads executions and decides approvals; it does not run agents").into(),
            );
        }
        let trace = context
            .extensions
            .get::<axum::http::request::Parts>()
            .and_then(|parts| parts.headers.get("traceparent"))
            .and_then(|v| v.to_str().ok())
            .and_then(crate::trace::parse);
        let client = super::agents::Client {
            trace,
            tasks: context.client_capabilities().is_some_and(|c| c.supports_tasks()),
            // A stateless request names its client in `_meta` (`rmcp`'s
            // fallback would name itself); a session's, at its handshake.
            info: if context.meta.protocol_version().is_some() {
                context.meta.client_info()
            } else {
                context.client_info()
            },
        };
        let gone = context.ct.cancelled_owned();
        super::agents::call(self.app(), &caller, &request.name, arguments, client, gone).await
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, ErrorData> {
        let caller = caller(&context.extensions)?;
        super::tasks::get(self.app(), &caller, &request.task_id).await
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let caller = caller(&context.extensions)?;
        super::tasks::update(self.app(), &caller, &request.task_id, request.input_responses).await
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), ErrorData> {
        let caller = caller(&context.extensions)?;
        super::tasks::cancel(self.app(), &caller, &request.task_id).await
    }
}
