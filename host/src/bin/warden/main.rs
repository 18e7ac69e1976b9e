//! The `warden` binary: `serve` runs the host; `keys` manages API keys in a data
//! dir (operator commands, on the host's machine); the other commands (deploy,
//! run, chat, executions, agents, schedules, conversations, approvals, mcp) are an
//! HTTP client of a running server.

#![deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::IsTerminal;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use serde_json::Value;
use warden_host::app::App;
use warden_host::client::Client;
use warden_host::config::Config;

mod chat;
mod mcp;
mod schedules;

warden_host::use_mimalloc!();

#[derive(Parser)]
#[command(
    name = "warden",
    version,
    about = "Run untrusted AI agents as sandboxed WebAssembly components"
)]
struct Cli {
    /// The server the client commands talk to.
    #[arg(long, global = true, env = "WARDEN_URL", default_value = "http://127.0.0.1:8080")]
    server: String,
    /// The API key the client commands send.
    #[arg(long, global = true, env = "WARDEN_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API (deploys the bundled example agents on a first start).
    Serve {
        /// Listen address [default: 127.0.0.1:8080, or the config file's].
        #[arg(long)]
        addr: Option<std::net::SocketAddr>,
        /// Data directory [default: ./warden-data, or the config file's].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// TOML config file (host limits, caps, pool size).
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Deploy a component as a new version of an agent.
    Deploy {
        wasm: PathBuf,
        #[arg(long)]
        name: Option<String>,
        /// JSON manifest (name, description, version, limits).
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Execute an agent and print the execution record.
    Run {
        agent: String,
        /// JSON input.
        #[arg(long, default_value = "null")]
        input: String,
        /// Return at once with the execution id instead of waiting.
        #[arg(long = "async")]
        run_async: bool,
    },
    /// Inspect executions.
    Executions {
        #[command(subcommand)]
        command: ExecutionsCommand,
    },
    /// Inspect agents.
    Agents {
        #[command(subcommand)]
        command: AgentsCommand,
    },
    /// Chat with an agent, turn by turn: each line you type is a turn of a
    /// conversation, and the answer streams back.
    Chat {
        agent: String,
        /// Continue this conversation instead of starting one.
        #[arg(long)]
        conversation: Option<String>,
    },
    /// Run agents on cron schedules.
    Schedules {
        #[command(subcommand)]
        command: schedules::SchedulesCommand,
    },
    /// Inspect and delete conversations.
    Conversations {
        #[command(subcommand)]
        command: ConversationsCommand,
    },
    /// Print the configuration an MCP client (Claude Code, Cursor, an IDE)
    /// needs to use this server's agents as tools, with --api-key's key.
    Mcp {
        /// The name the client shows for the server.
        #[arg(long, default_value = "warden")]
        name: String,
    },
    /// The approvals inbox: list requests, approve or reject them.
    Approvals {
        #[command(subcommand)]
        command: ApprovalsCommand,
    },
    /// Manage API keys, in the data dir (works whether or not the server runs).
    Keys {
        /// Data directory [default: ./warden-data, or the config file's].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// TOML config file (for its data_dir).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// (Internal) Compile one component from stdin to stdout, as the server's
    /// child process, within a memory cap in MiB.
    #[command(name = "compile-component", hide = true)]
    CompileComponent { max_memory_mb: u64 },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// Create a key and print it (its token is shown only now).
    Create {
        /// The workspace the key belongs to (created with its first key).
        #[arg(long)]
        workspace: String,
        /// What the key is for.
        #[arg(long)]
        name: String,
        /// Also manage the workspace's keys over the admin API.
        #[arg(long, conflicts_with = "approver")]
        admin: bool,
        /// Only read and decide approval requests.
        #[arg(long)]
        approver: bool,
    },
    /// List keys (of one workspace, or all).
    List {
        #[arg(long)]
        workspace: Option<String>,
    },
    /// Revoke a key.
    Revoke { id: String },
}

#[derive(Subcommand)]
enum ExecutionsCommand {
    List {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        after: Option<String>,
    },
    Get {
        id: String,
    },
    Logs {
        id: String,
    },
    Steps {
        id: String,
    },
    /// Cancel a queued or running execution.
    Cancel {
        id: String,
    },
    /// Run an execution again as a new, linked execution.
    Retry {
        id: String,
    },
}

#[derive(Subcommand)]
enum ConversationsCommand {
    /// Conversations, newest first.
    List {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        after: Option<String>,
    },
    /// One conversation with its turns.
    Get { id: String },
    /// Delete a conversation: its turns and session memory.
    Delete { id: String },
}

#[derive(Subcommand)]
enum ApprovalsCommand {
    /// Requests, newest first.
    List {
        /// pending, approved, rejected, expired or cancelled.
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        agent: Option<String>,
        #[arg(long)]
        execution: Option<String>,
        #[arg(long)]
        limit: Option<u32>,
        #[arg(long)]
        after: Option<String>,
    },
    Get {
        id: String,
    },
    /// Approve a request (`apr_…`), or an execution's open one (`exec_…`).
    Approve {
        id: String,
        #[arg(long)]
        comment: Option<String>,
        /// JSON handed to the agent.
        #[arg(long)]
        data: Option<String>,
    },
    /// Reject a request (`apr_…`), or an execution's open one (`exec_…`).
    Reject {
        id: String,
        #[arg(long)]
        reason: Option<String>,
    },
}

/// Where a decision on `id` goes: a request, or an execution's open request.
fn decision_path(id: &str, decision: &str) -> String {
    if id.starts_with("exec_") {
        format!("/v1/executions/{id}/{decision}")
    } else {
        format!("/v1/approvals/{id}/{decision}")
    }
}

#[derive(Subcommand)]
enum AgentsCommand {
    List,
    Get { agent: String },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,wasmtime=warn,rmcp=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let cli = Cli::parse();
    if let Command::CompileComponent { max_memory_mb } = cli.command {
        let engine = warden_host::runtime::engine::compiler()?;
        let code = warden_host::runtime::compiler::compile_stdin_to_stdout(&engine, max_memory_mb);
        std::process::exit(i32::from(code));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(cli))
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let client = || Client::new(&cli.server, cli.api_key.as_deref());
    let output: Value = match cli.command {
        Command::Serve { addr, data_dir, config } => {
            let mut cfg = match config {
                Some(path) => Config::from_file(&path)?,
                None => Config::default(),
            };
            if let Some(addr) = addr {
                cfg.addr = addr;
            }
            if let Some(dir) = data_dir {
                cfg.data_dir = dir;
            }
            if cfg.deploy.program.is_none() {
                // Components compile in a child process of this same binary.
                cfg.deploy.program = Some(std::env::current_exe().context("finding the warden binary")?);
            }
            return serve(cfg).await;
        }
        Command::Deploy { wasm, name, manifest } => {
            client()?.deploy(&wasm, name.as_deref(), manifest.as_deref()).await?
        }
        Command::Run {
            agent,
            input,
            run_async,
        } => {
            let input: Value = serde_json::from_str(&input).context("--input must be JSON")?;
            client()?
                .run(&agent, input, if run_async { "async" } else { "sync" })
                .await?
        }
        Command::Executions { command } => match command {
            ExecutionsCommand::List {
                agent,
                status,
                limit,
                after,
            } => {
                let mut q = Vec::new();
                q.extend(agent.map(|v| ("agent_id", v)));
                q.extend(status.map(|v| ("status", v)));
                q.extend(limit.map(|v| ("limit", v.to_string())));
                q.extend(after.map(|v| ("after", v)));
                client()?.get("/v1/executions", &q).await?
            }
            ExecutionsCommand::Get { id } => client()?.get(&format!("/v1/executions/{id}"), &[]).await?,
            ExecutionsCommand::Logs { id } => client()?.get(&format!("/v1/executions/{id}/logs"), &[]).await?,
            ExecutionsCommand::Steps { id } => client()?.get(&format!("/v1/executions/{id}/steps"), &[]).await?,
            ExecutionsCommand::Cancel { id } => client()?.post(&format!("/v1/executions/{id}/cancel")).await?,
            ExecutionsCommand::Retry { id } => client()?.post(&format!("/v1/executions/{id}/retry")).await?,
        },
        Command::Agents { command } => match command {
            AgentsCommand::List => client()?.get("/v1/agents", &[]).await?,
            AgentsCommand::Get { agent } => client()?.get(&format!("/v1/agents/{agent}"), &[]).await?,
        },
        Command::Chat { agent, conversation } => return chat::chat(&client()?, &agent, conversation).await,
        Command::Schedules { command } => schedules::run(&client()?, command).await?,
        Command::Mcp { name } => return mcp::print(&client()?, &cli.server, cli.api_key.as_deref(), &name).await,
        Command::Conversations { command } => match command {
            ConversationsCommand::List { agent, limit, after } => {
                let mut q = Vec::new();
                q.extend(agent.map(|v| ("agent_id", v)));
                q.extend(limit.map(|v| ("limit", v.to_string())));
                q.extend(after.map(|v| ("after", v)));
                client()?.get("/v1/conversations", &q).await?
            }
            ConversationsCommand::Get { id } => client()?.get(&format!("/v1/conversations/{id}"), &[]).await?,
            ConversationsCommand::Delete { id } => {
                client()?.delete(&format!("/v1/conversations/{id}")).await?;
                serde_json::json!({ "deleted": id })
            }
        },
        Command::Approvals { command } => match command {
            ApprovalsCommand::List {
                status,
                agent,
                execution,
                limit,
                after,
            } => {
                let mut q = Vec::new();
                q.extend(status.map(|v| ("status", v)));
                q.extend(agent.map(|v| ("agent_id", v)));
                q.extend(execution.map(|v| ("execution_id", v)));
                q.extend(limit.map(|v| ("limit", v.to_string())));
                q.extend(after.map(|v| ("after", v)));
                client()?.get("/v1/approvals", &q).await?
            }
            ApprovalsCommand::Get { id } => client()?.get(&format!("/v1/approvals/{id}"), &[]).await?,
            ApprovalsCommand::Approve { id, comment, data } => {
                let data: Option<Value> = data
                    .map(|d| serde_json::from_str(&d).context("--data must be JSON"))
                    .transpose()?;
                let body = serde_json::json!({ "comment": comment, "data": data });
                client()?.post_json(&decision_path(&id, "approve"), &body).await?
            }
            ApprovalsCommand::Reject { id, reason } => {
                let body = serde_json::json!({ "reason": reason });
                client()?.post_json(&decision_path(&id, "reject"), &body).await?
            }
        },
        Command::CompileComponent { .. } => return Ok(()),
        Command::Keys {
            data_dir,
            config,
            command,
        } => {
            let data_dir = match (data_dir, config) {
                (Some(dir), _) => dir,
                (None, Some(path)) => Config::from_file(&path)?.data_dir,
                (None, None) => Config::default().data_dir,
            };
            keys(&data_dir, command).await?
        }
    };
    println!("{}", serde_json::to_string_pretty(&output)?);
    Ok(())
}

/// `warden keys …` on the data dir's store.
async fn keys(data_dir: &std::path::Path, command: KeysCommand) -> anyhow::Result<Value> {
    use warden_host::auth::keys;
    use warden_host::record::Role;
    let stores = warden_host::store::Stores::open(data_dir)?;
    let result = async {
        Ok(match command {
            KeysCommand::Create {
                workspace,
                name,
                admin,
                approver,
            } => {
                let role = match (admin, approver) {
                    (true, _) => Role::Admin,
                    (_, true) => Role::Approver,
                    _ => Role::Member,
                };
                let new = keys::generate(&workspace, &name, role).map_err(anyhow::Error::msg)?;
                stores.keys.insert(new.key.clone(), new.secret_sha256).await?;
                serde_json::json!({ "key": new.key, "token": new.token })
            }
            KeysCommand::List { workspace } => {
                serde_json::json!({ "data": stores.keys.list(workspace.as_deref()).await? })
            }
            KeysCommand::Revoke { id } => {
                let key = stores.keys.revoke(&id, None, warden_host::time::now_ms()).await?;
                serde_json::to_value(key.ok_or_else(|| anyhow::anyhow!("no key {id:?}"))?)?
            }
        })
    }
    .await;
    stores.close().await;
    result
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.addr)
        .await
        .with_context(|| format!("binding {}", config.addr))?;
    let app = App::open(config).await?;
    tracing::info!(
        addr = %listener.local_addr()?,
        data_dir = %app.config.data_dir.display(),
        agents = app.registry.len(),
        "warden is serving"
    );
    let mut terminate =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).context("listening for SIGTERM")?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: shutting down"),
            _ = terminate.recv() => tracing::info!("SIGTERM: shutting down"),
        }
    };
    warden_host::server::serve(listener, app, shutdown).await
}
