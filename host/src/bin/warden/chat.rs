//! `warden chat`: a conversation with an agent at the terminal, a line a turn,
//! each answer printed as it streams.

use std::io::IsTerminal;

use anyhow::Context;
use warden_host::client::Client;

/// `warden chat`: reads a message a line, sends it as the conversation's next
/// turn and prints the answer as it streams. Ends at the end of input.
pub async fn chat(client: &Client, agent: &str, conversation: Option<String>) -> anyhow::Result<()> {
    use std::io::Write;
    use tokio::io::AsyncBufReadExt;
    let conversation = match conversation {
        Some(id) => id,
        None => {
            let made = client
                .post_json("/v1/conversations", &serde_json::json!({ "agent": agent }))
                .await?;
            made["id"]
                .as_str()
                .context("the server made no conversation id")?
                .to_owned()
        }
    };
    let interactive = std::io::stdin().is_terminal();
    eprintln!("conversation {conversation} with {agent} (continue it later with --conversation {conversation})");
    let mut lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    loop {
        if interactive {
            eprint!("> ");
        }
        let Some(line) = lines.next_line().await? else { break };
        if line.trim().is_empty() {
            continue;
        }
        let mut streamed = false;
        let (kind, end) = client
            .chat_turn(agent, &conversation, &line, |delta| {
                streamed = true;
                print!("{delta}");
                let _ = std::io::stdout().flush();
            })
            .await?;
        if kind == "done" {
            if !streamed {
                let output = serde_json::value::to_raw_value(&end["output"])?;
                print!("{}", warden_host::record::assistant_text(&output));
            }
            println!();
        } else {
            println!();
            eprintln!(
                "the turn ended {}: {}",
                end["status"].as_str().unwrap_or("failed"),
                end["error"]["message"].as_str().unwrap_or("")
            );
        }
    }
    Ok(())
}
