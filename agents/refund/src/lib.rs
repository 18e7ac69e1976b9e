//! `refund`: refunds an order. A refund over 100 needs a person's approval
//! first: the run asks, waits (the host unloads it meanwhile, for as long as
//! it takes) and, once approved, records the refund in the agent's `kv` store.
//! A rejection ends the execution `rejected`. Returns `{order_id, amount,
//! refund_id, approved_by_note}`.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use warden_sdk::{AgentError, approval, log, step, tools};

/// Refunds up to this go through without asking.
const AUTO_APPROVE_LIMIT: f64 = 100.0;

#[derive(Deserialize)]
struct Input {
    order_id: String,
    amount: f64,
    #[serde(default)]
    reason: String,
}

#[derive(Serialize)]
struct Output {
    order_id: String,
    amount: f64,
    refund_id: String,
    /// What the approver attached (`{"note": ...}`), if anything.
    approval: Option<Value>,
}

fn run(input: Input) -> Result<Output, AgentError> {
    let key = format!("refund:{}", input.order_id);
    let done = tools::call("kv", &json!({ "op": "get", "key": key }))?;
    if !done["value"].is_null() {
        return Err(AgentError::new(
            "already_refunded",
            format!("order {} was refunded already", input.order_id),
        ));
    }
    let approval = if input.amount > AUTO_APPROVE_LIMIT {
        log::info(format!(
            "refund of {} for {} needs approval",
            input.amount, input.order_id
        ));
        let mut request = approval::request(
            &format!("Refund {:.2} for order {}", input.amount, input.order_id),
            &json!({ "order_id": input.order_id, "amount": input.amount, "reason": input.reason }),
        );
        request.timeout_secs = Some(7 * 24 * 3600);
        approval::require(&request)?
    } else {
        None
    };
    let refund_id = format!("rf-{}", input.order_id);
    tools::call(
        "kv",
        &json!({ "op": "set", "key": key, "value": { "refund_id": refund_id, "amount": input.amount } }),
    )?;
    step(
        "refunded",
        &json!({ "order_id": input.order_id, "amount": input.amount }),
    );
    Ok(Output {
        order_id: input.order_id,
        amount: input.amount,
        refund_id,
        approval,
    })
}

warden_sdk::agent!(run);
