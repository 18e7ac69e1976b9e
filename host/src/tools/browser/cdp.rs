//! A DevTools protocol connection to a browser: numbered calls, events read as
//! they come.

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::ports::ToolError;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A DevTools protocol connection: numbered calls, events read as they come.
pub struct Cdp {
    ws: Socket,
    next_id: u64,
}

impl Cdp {
    /// Connects to the browser's DevTools endpoint.
    pub async fn connect(ws_url: &str) -> Result<Self, ToolError> {
        let (ws, _) = tokio_tungstenite::connect_async(ws_url)
            .await
            .map_err(|e| ToolError::Failed(format!("browser: connecting to DevTools: {e}")))?;
        Ok(Self { ws, next_id: 0 })
    }

    async fn recv(&mut self) -> Result<Value, ToolError> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => {
                    return serde_json::from_str(text.as_str())
                        .map_err(|e| ToolError::Failed(format!("browser: bad DevTools message: {e}")));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(ToolError::Failed(format!("browser: DevTools connection: {e}"))),
                None => return Err(ToolError::Failed("browser: DevTools connection closed".into())),
            }
        }
    }

    pub async fn call(&mut self, method: &str, params: Value, session: Option<&str>) -> Result<Value, ToolError> {
        self.next_id += 1;
        let id = self.next_id;
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        self.ws
            .send(Message::text(msg.to_string()))
            .await
            .map_err(|e| ToolError::Failed(format!("browser: sending {method}: {e}")))?;
        loop {
            let v = self.recv().await?;
            if v["id"].as_u64() == Some(id) {
                if let Some(err) = v.get("error") {
                    return Err(ToolError::Failed(format!("browser: {method}: {}", err["message"])));
                }
                return Ok(v["result"].clone());
            }
        }
    }

    pub async fn wait_event(&mut self, method: &str, session: &str) -> Result<(), ToolError> {
        loop {
            let v = self.recv().await?;
            if v["method"] == method && v["sessionId"] == session {
                return Ok(());
            }
        }
    }

    pub async fn eval(&mut self, expression: &str, session: Option<&str>) -> Result<String, ToolError> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expression, "returnByValue": true }),
                session,
            )
            .await?;
        Ok(r["result"]["value"].as_str().unwrap_or_default().to_owned())
    }
}
