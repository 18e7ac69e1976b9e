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

mod approvals;
mod build;
mod chat;
mod keys;
mod live;
mod mcp;
mod output;
mod scaffold;
mod schedules;

use output::View;

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
    /// Print the server's JSON (the default when the output is not a terminal).
    #[arg(long, global = true)]
    json: bool,
    /// `table` for people, `json` for programs [default: table on a terminal].
    #[arg(long, global = true, value_enum)]
    output: Option<output::Format>,
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
    /// Scaffold an agent in a new directory NAME: manifest.json and source.
    New {
        name: String,
        #[arg(long, value_enum, default_value = "rust")]
        lang: build::Lang,
    },
    /// Build the agent in DIR into a component with its language's toolchain
    /// (cargo; componentize-py, installed into a cache on first use).
    Build {
        #[arg(default_value = ".")]
        dir: PathBuf,
        /// Where the component goes (default DIR/build/NAME.wasm).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Deploy a component (or build and deploy an agent's directory) as a new
    /// version of an agent.
    Deploy {
        /// A component, or an agent's directory (built first; its manifest.json is the manifest).
        wasm: PathBuf,
        #[arg(long)]
        name: Option<String>,
        /// JSON manifest (name, description, version, limits).
        #[arg(long)]
        manifest: Option<PathBuf>,
    },
    /// Execute an agent. On a terminal (or with --stream) it follows the run
    /// live: the answer, tool calls and logs as they come; Ctrl-C offers to
    /// cancel it. Otherwise it prints the final record.
    Run {
        agent: String,
        /// JSON input, or @file.json, or @- for standard input.
        #[arg(long, default_value = "null")]
        input: String,
        /// The model of the agent's calls that name none (one of its manifest's models).
        #[arg(long)]
        model: Option<String>,
        /// Return at once with the execution id instead of waiting.
        #[arg(long = "async", conflicts_with = "stream")]
        run_async: bool,
        /// Follow the run live even when the output is not a terminal.
        #[arg(long)]
        stream: bool,
    },
    /// Print a shell completion script: `warden completions bash > /etc/bash_completion.d/warden`.
    Completions { shell: clap_complete::Shell },
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
        command: approvals::ApprovalsCommand,
    },
    /// Manage API keys, in the store (works whether or not the server runs).
    Keys {
        /// Data directory [default: ./warden-data, or the config file's].
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// TOML config file (for its data_dir and store).
        #[arg(long)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: keys::KeysCommand,
    },
    /// (Internal) Compile one component from stdin to stdout, as the server's
    /// child process, within a memory cap in MiB.
    #[command(name = "compile-component", hide = true)]
    CompileComponent { max_memory_mb: u64 },
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
        /// Keep printing new lines until the execution ends.
        #[arg(long, short, conflicts_with_all = ["after", "limit"])]
        follow: bool,
        /// The previous page's cursor.
        #[arg(long)]
        after: Option<String>,
        /// 1 to 10000 lines (default 1000).
        #[arg(long)]
        limit: Option<u32>,
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
        warden_host::allocator::purge_at_once();
        let engine = warden_host::runtime::engine::compiler()?;
        let code = warden_host::runtime::compiler::compile_stdin_to_stdout(&engine, max_memory_mb);
        std::process::exit(i32::from(code));
    }
    if !matches!(cli.command, Command::Serve { .. }) {
        // A client command piped into `head` ends quietly when the pipe closes,
        // as Unix tools do, instead of failing to print. (The server keeps
        // ignoring SIGPIPE: a closed connection is an error to handle there.)
        // SAFETY: setting a signal's disposition to the default, before any
        // other thread exists, has no preconditions.
        unsafe {
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        }
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(cli))
}

/// `--input`: JSON, or `@file` with JSON in it, or `@-` for standard input.
pub(crate) fn read_input(input: &str) -> anyhow::Result<Value> {
    let text = match input.strip_prefix('@') {
        Some("-") => std::io::read_to_string(std::io::stdin()).context("reading the input from standard input")?,
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading the input from {path}"))?,
        None => input.to_owned(),
    };
    serde_json::from_str(&text).context("not JSON (pass JSON, @file.json or @- for standard input)")
}

/// Query pairs of the options that are set.
pub(crate) fn query(pairs: [(&'static str, Option<String>); 5]) -> Vec<(&'static str, String)> {
    pairs.into_iter().filter_map(|(k, v)| v.map(|v| (k, v))).collect()
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    let format = output::format(cli.output, cli.json);
    let client = || Client::new(&cli.server, cli.api_key.as_deref());
    let (output, view): (Value, View) = match cli.command {
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
        Command::Completions { shell } => {
            use clap::CommandFactory;
            clap_complete::generate(shell, &mut Cli::command(), "warden", &mut std::io::stdout());
            return Ok(());
        }
        Command::New { name, lang } => {
            let dir = scaffold::new(&name, lang)?;
            eprintln!(
                "made {}: build it with `warden build {0}`, deploy it with `warden deploy {0}`",
                dir.display()
            );
            return Ok(());
        }
        Command::Build { dir, out } => {
            let built = tokio::task::spawn_blocking(move || build::build(&dir, out.as_deref())).await??;
            println!("{}", built.display());
            return Ok(());
        }
        Command::Deploy { wasm, name, manifest } => {
            let (wasm, manifest) = if wasm.is_dir() {
                let dir = wasm.clone();
                let built = tokio::task::spawn_blocking(move || build::build(&dir, None)).await??;
                (built, manifest.or_else(|| Some(wasm.join("manifest.json"))))
            } else {
                (wasm, manifest)
            };
            (
                client()?.deploy(&wasm, name.as_deref(), manifest.as_deref()).await?,
                View::Json,
            )
        }
        Command::Run {
            agent,
            input,
            model,
            run_async,
            stream,
        } => {
            let mut body = serde_json::json!({ "input": read_input(&input)? });
            if let Some(model) = model {
                body["model"] = model.into();
            }
            if stream || (!run_async && format == output::Format::Table) {
                let record = live::run(&client()?, &agent, body).await?;
                std::process::exit(if record["status"] == "completed" { 0 } else { 1 });
            }
            let mode = if run_async { "async" } else { "sync" };
            let record = client()?.run(&agent, body, mode).await?;
            if run_async && format == output::Format::Table {
                let id = output::text(&record["id"]);
                println!(
                    "{id} {}\nfollow it: warden executions logs --follow {id}",
                    output::text(&record["status"])
                );
                return Ok(());
            }
            output::print(&record, View::Execution, format)?;
            // A run that ended without completing is a failed command.
            let failed = ["failed", "cancelled", "rejected"].contains(&record["status"].as_str().unwrap_or(""));
            std::process::exit(i32::from(failed));
        }
        Command::Executions { command } => match command {
            ExecutionsCommand::List {
                agent,
                status,
                limit,
                after,
            } => {
                let q = query([
                    ("agent_id", agent),
                    ("status", status),
                    ("limit", limit.map(|v| v.to_string())),
                    ("after", after),
                    ("trigger", None),
                ]);
                (client()?.get("/v1/executions", &q).await?, View::Executions)
            }
            ExecutionsCommand::Get { id } => (
                client()?.get(&format!("/v1/executions/{id}"), &[]).await?,
                View::Execution,
            ),
            ExecutionsCommand::Logs { id, follow: true, .. } => return live::logs(&client()?, &id).await,
            ExecutionsCommand::Logs { id, after, limit, .. } => {
                let q = query([
                    ("after", after),
                    ("limit", limit.map(|v| v.to_string())),
                    ("status", None),
                    ("trigger", None),
                    ("agent_id", None),
                ]);
                (
                    client()?.get(&format!("/v1/executions/{id}/logs"), &q).await?,
                    View::Logs,
                )
            }
            ExecutionsCommand::Steps { id } => (
                client()?.get(&format!("/v1/executions/{id}/steps"), &[]).await?,
                View::Steps,
            ),
            ExecutionsCommand::Cancel { id } => (
                client()?.post(&format!("/v1/executions/{id}/cancel")).await?,
                View::Execution,
            ),
            ExecutionsCommand::Retry { id } => (
                client()?.post(&format!("/v1/executions/{id}/retry")).await?,
                View::Execution,
            ),
        },
        Command::Agents { command } => match command {
            AgentsCommand::List => (client()?.get("/v1/agents", &[]).await?, View::Agents),
            AgentsCommand::Get { agent } => (client()?.get(&format!("/v1/agents/{agent}"), &[]).await?, View::Json),
        },
        Command::Chat { agent, conversation } => return chat::chat(&client()?, &agent, conversation).await,
        Command::Schedules { command } => schedules::run(&client()?, command).await?,
        Command::Mcp { name } => return mcp::print(&client()?, &cli.server, cli.api_key.as_deref(), &name).await,
        Command::Conversations { command } => match command {
            ConversationsCommand::List { agent, limit, after } => {
                let q = query([
                    ("agent_id", agent),
                    ("limit", limit.map(|v| v.to_string())),
                    ("after", after),
                    ("status", None),
                    ("trigger", None),
                ]);
                (client()?.get("/v1/conversations", &q).await?, View::Conversations)
            }
            ConversationsCommand::Get { id } => (
                client()?.get(&format!("/v1/conversations/{id}"), &[]).await?,
                View::Json,
            ),
            ConversationsCommand::Delete { id } => {
                client()?.delete(&format!("/v1/conversations/{id}")).await?;
                (serde_json::json!({ "deleted": id }), View::Json)
            }
        },
        Command::Approvals { command } => approvals::run(&client()?, command).await?,
        Command::CompileComponent { .. } => return Ok(()),
        Command::Keys {
            data_dir,
            config,
            command,
        } => {
            let mut config = match config {
                Some(path) => Config::from_file(&path)?,
                None => Config::default(),
            };
            if let Some(dir) = data_dir {
                config.data_dir = dir;
            }
            let view = match command {
                keys::KeysCommand::List { .. } => View::Keys,
                _ => View::Json,
            };
            (keys::run(&config, command).await?, view)
        }
    };
    output::print(&output, view, format)
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
