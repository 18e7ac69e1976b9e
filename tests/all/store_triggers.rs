//! The store's conformance suite, continued: schedules (saved whole, listed by
//! workspace, the due ones found by their next slot or a run fixed or a slot
//! buffered), incoming hooks (with their secrets) and outgoing webhooks (the
//! deliveries owed, due by their next attempt).

use std::sync::Arc;

use serde_json::value::RawValue;
use warden_host::record::{Attempt, Delivery, DeliveryStatus, Hook, Overlap, Schedule, Subscription};
use warden_host::store::{ScheduleFilter, Stores};

fn schedule(id: &str, workspace: &str, next_run_at: Option<i64>) -> Schedule {
    let raw = |t: &str| -> Arc<RawValue> { RawValue::from_string(t.to_owned()).unwrap().into() };
    Schedule {
        id: id.into(),
        workspace: workspace.into(),
        agent_id: "agt_a".into(),
        version: Some(2),
        cron: "*/5 * * * * *".into(),
        timezone: "Europe/Paris".into(),
        input: raw(r#"{"n":1}"#),
        metadata: raw("{}"),
        priority: 60,
        overlap: Overlap::BufferOne,
        catchup_window_secs: 30,
        enabled: true,
        end_at: None,
        next_run_at,
        last_slot: None,
        last_execution_id: None,
        buffered_slot: None,
        pending_execution_id: None,
        runs: 0,
        skipped: 0,
        last_error: None,
        created_at: 1,
        updated_at: 1,
    }
}

pub async fn schedules(s: Stores) {
    s.schedules.save(schedule("sch_1", "w1", Some(100))).await.unwrap();
    s.schedules.save(schedule("sch_2", "w1", Some(200))).await.unwrap();
    s.schedules.save(schedule("sch_3", "w2", Some(50))).await.unwrap();
    let got = s.schedules.get("sch_1").await.unwrap().unwrap();
    assert_eq!(
        (got.version, got.overlap, got.priority, got.input.get()),
        (Some(2), Overlap::BufferOne, 60, r#"{"n":1}"#)
    );
    assert_eq!(got.timezone, "Europe/Paris");
    // Due: by next slot, the most overdue first; across workspaces (one loop fires them all).
    let due_ids = |due: Vec<Schedule>| {
        let mut ids: Vec<String> = due.into_iter().map(|s| s.id).collect();
        ids.sort();
        ids
    };
    assert_eq!(due_ids(s.schedules.due(150, 10).await.unwrap()), ["sch_1", "sch_3"]);
    assert_eq!(
        due_ids(s.schedules.due(150, 1).await.unwrap()),
        ["sch_3"],
        "the most overdue first"
    );
    assert_eq!(s.schedules.next_due().await.unwrap(), Some(50));
    // A fixed run or a buffered slot makes one due whatever its next slot.
    let mut fixed = schedule("sch_2", "w1", Some(200));
    fixed.pending_execution_id = Some("exec_9".into());
    fixed.runs = 4;
    s.schedules.save(fixed).await.unwrap();
    assert_eq!(
        due_ids(s.schedules.due(150, 10).await.unwrap()),
        ["sch_1", "sch_2", "sch_3"]
    );
    assert_eq!(s.schedules.get("sch_2").await.unwrap().unwrap().runs, 4, "saved whole");
    // A disabled one has no slot due; its buffered slot still is.
    let mut off = schedule("sch_3", "w2", Some(50));
    off.enabled = false;
    s.schedules.save(off.clone()).await.unwrap();
    assert_eq!(s.schedules.next_due().await.unwrap(), Some(100));
    assert_eq!(due_ids(s.schedules.due(150, 10).await.unwrap()), ["sch_1", "sch_2"]);
    off.buffered_slot = Some(45);
    s.schedules.save(off).await.unwrap();
    assert_eq!(
        due_ids(s.schedules.due(150, 10).await.unwrap()),
        ["sch_1", "sch_2", "sch_3"]
    );
    let filter = |enabled: Option<bool>, after: Option<&str>, limit| ScheduleFilter {
        workspace: "w1".into(),
        agent_id: Some("agt_a".into()),
        enabled,
        after: after.map(Into::into),
        limit,
    };
    let (page, more) = s.schedules.list(filter(None, None, 1)).await.unwrap();
    assert_eq!((page[0].id.as_str(), more), ("sch_2", true));
    let (page, more) = s.schedules.list(filter(Some(true), Some("sch_2"), 5)).await.unwrap();
    assert_eq!((page.len(), more), (1, false));
    s.schedules.delete("sch_1").await.unwrap();
    assert!(s.schedules.get("sch_1").await.unwrap().is_none());
}

pub async fn hooks(s: Stores) {
    let hook = |id: &str, workspace: &str| Hook {
        id: id.into(),
        workspace: workspace.into(),
        agent_id: "agt_a".into(),
        description: "d".into(),
        url: Hook::url_of(id),
        secret: "whsec_abc".into(),
        created_at: 1,
    };
    s.hooks.create(hook("hook_1", "w1")).await.unwrap();
    s.hooks.create(hook("hook_2", "w2")).await.unwrap();
    let got = s.hooks.get("hook_1").await.unwrap().unwrap();
    assert_eq!(
        (got.secret.as_str(), got.url.as_str()),
        ("whsec_abc", "/v1/hooks/hook_1")
    );
    assert_eq!(s.hooks.list("w1").await.unwrap().len(), 1);
    s.hooks.delete("hook_1").await.unwrap();
    assert!(s.hooks.get("hook_1").await.unwrap().is_none());
}

pub async fn webhooks(s: Stores) {
    let subscription = |id: &str, workspace: &str| Subscription {
        id: id.into(),
        workspace: workspace.into(),
        url: "https://example.com/in".into(),
        events: vec!["execution.completed".into()],
        description: String::new(),
        secret: "whsec_abc".into(),
        created_at: 1,
    };
    let delivery = |id: &str, subscription: &str, next: Option<i64>| Delivery {
        id: id.into(),
        subscription_id: subscription.into(),
        event: "execution.completed".into(),
        payload: RawValue::from_string(r#"{"type":"execution.completed"}"#.into())
            .unwrap()
            .into(),
        status: DeliveryStatus::Pending,
        attempts: Vec::new(),
        next_attempt_at: next,
        created_at: 1,
    };
    s.webhooks.subscribe(subscription("whk_1", "w1")).await.unwrap();
    s.webhooks.subscribe(subscription("whk_2", "w2")).await.unwrap();
    assert_eq!(s.webhooks.subscriptions().await.unwrap().len(), 2);
    assert_eq!(
        s.webhooks.subscription("whk_1").await.unwrap().unwrap().secret,
        "whsec_abc"
    );
    s.webhooks
        .deliver(vec![
            delivery("msg_1", "whk_1", Some(10)),
            delivery("msg_2", "whk_1", Some(30)),
            delivery("msg_3", "whk_gone", Some(5)),
        ])
        .await
        .unwrap();
    // Due by next attempt; none for a subscription that does not exist.
    let due: Vec<String> = s
        .webhooks
        .due(20, 10)
        .await
        .unwrap()
        .into_iter()
        .map(|d| d.id)
        .collect();
    assert_eq!(due, ["msg_1"]);
    assert_eq!(s.webhooks.next_due().await.unwrap(), Some(10));
    // An attempt recorded: replaced whole.
    let mut done = delivery("msg_1", "whk_1", None);
    done.status = DeliveryStatus::Delivered;
    done.attempts.push(Attempt {
        at: 15,
        status_code: Some(200),
        error: None,
        duration_ms: 3,
    });
    s.webhooks.deliver(vec![done]).await.unwrap();
    let got = s.webhooks.delivery("whk_1", "msg_1").await.unwrap().unwrap();
    assert!(
        s.webhooks.delivery("whk_2", "msg_1").await.unwrap().is_none(),
        "by its subscription"
    );
    assert_eq!((got.status, got.attempts.len()), (DeliveryStatus::Delivered, 1));
    assert_eq!(s.webhooks.next_due().await.unwrap(), Some(30));
    let (page, more) = s.webhooks.deliveries("whk_1", None, 1).await.unwrap();
    assert_eq!((page[0].id.as_str(), more), ("msg_2", true));
    // The sweep takes finished deliveries only.
    s.webhooks.sweep(100).await.unwrap();
    assert!(
        s.webhooks.delivery("whk_1", "msg_1").await.unwrap().is_none(),
        "delivered: swept"
    );
    assert!(
        s.webhooks.delivery("whk_1", "msg_2").await.unwrap().is_some(),
        "pending: kept"
    );
    // Unsubscribed: its deliveries go with it.
    s.webhooks.unsubscribe("whk_1").await.unwrap();
    assert!(s.webhooks.delivery("whk_1", "msg_2").await.unwrap().is_none());
    assert_eq!(s.webhooks.next_due().await.unwrap(), None);
}
