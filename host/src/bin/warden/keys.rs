//! `warden keys …`: API keys, made, listed and revoked on a data dir's store
//! directly (operator commands on the host's machine; the server need not run).

use clap::Subcommand;
use serde_json::Value;

#[derive(Subcommand)]
pub enum KeysCommand {
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

/// `warden keys …` on the configured store.
pub async fn run(config: &warden_host::config::Config, command: KeysCommand) -> anyhow::Result<Value> {
    use warden_host::auth::keys;
    use warden_host::record::Role;
    let stores = warden_host::store::Stores::connect(&config.data_dir, &config.store).await?;
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
