//! `warden mcp`: what an MCP client needs to use a running server's agents as
//! tools: the JSON entry most clients take (`mcpServers`), on stdout, and the
//! Claude Code command and the tools it will see, on stderr.

use serde_json::json;
use warden_host::client::Client;

/// The tools every workspace has besides its agents.
const EXECUTION_TOOLS: &str = "list_recent_executions, get_execution_result, get_agent_activity_summary";

pub async fn print(client: &Client, server: &str, api_key: Option<&str>, name: &str) -> anyhow::Result<()> {
    let url = format!("{}/mcp", server.trim_end_matches('/'));
    let mut entry = json!({ "type": "http", "url": url });
    if let Some(key) = api_key {
        entry["headers"] = json!({ "Authorization": format!("Bearer {key}") });
    }
    let config = json!({ "mcpServers": { name: entry } });
    println!("{}", serde_json::to_string_pretty(&config)?);
    let header = api_key
        .map(|key| format!(" --header \"Authorization: Bearer {key}\""))
        .unwrap_or_default();
    eprintln!("\nClaude Code: claude mcp add --transport http {name} {url}{header}");
    match client.get("/v1/agents", &[]).await {
        Ok(page) => {
            let agents: Vec<&str> = page["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a["name"].as_str())
                .collect();
            let agents = if agents.is_empty() {
                "(none yet)".to_owned()
            } else {
                agents.join(", ")
            };
            eprintln!("Tools: the agents {agents}; and {EXECUTION_TOOLS}");
        }
        Err(e) => eprintln!("(the server could not list its agents: {e:#})"),
    }
    Ok(())
}
