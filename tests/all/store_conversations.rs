//! The store's conformance suite, continued: conversations (turns as rows,
//! added with a completed turn's final record, counted; deleted and swept with
//! their session memory) and memory (entries by scope, usage counted, nothing
//! written into a memory that is gone).

use std::sync::Arc;

use serde_json::value::RawValue;
use warden_host::record::{Conversation, MemoryEntry, MemoryStoreInfo, Status, Turn, TurnRole};
use warden_host::store::{ConversationFilter, ExecutionFilter, FinalRecord, Stores};

fn raw(text: &str) -> Arc<RawValue> {
    RawValue::from_string(text.to_owned()).unwrap().into()
}

fn conversation(id: &str, workspace: &str, agent_id: &str, at: i64) -> Conversation {
    Conversation {
        id: id.into(),
        workspace: workspace.into(),
        agent_id: agent_id.into(),
        turn_count: 0,
        token_count: 0,
        metadata: raw("{}"),
        created_at: at,
        last_active_at: at,
    }
}

fn entry(key: &str, value: &str) -> MemoryEntry {
    MemoryEntry {
        key: key.into(),
        value: raw(value),
        updated_at: 1,
    }
}

pub async fn conversations(s: Stores) {
    s.agents
        .deploy(
            super::store::agent("agt_a", "w1"),
            super::store::version("ver_1", "agt_a", 1, "h"),
            None,
        )
        .await
        .unwrap();
    let first = vec![
        Turn::new(TurnRole::User, "hi".into(), "exec_0", 5),
        Turn::new(TurnRole::Assistant, "hello".into(), "exec_0", 6),
    ];
    s.conversations
        .create(conversation("conv_1", "w1", "agt_a", 5), first)
        .await
        .unwrap();
    s.conversations
        .create(conversation("conv_2", "w1", "agt_b", 7), Vec::new())
        .await
        .unwrap();
    s.conversations
        .create(conversation("conv_3", "w2", "agt_a", 8), Vec::new())
        .await
        .unwrap();
    let got = s.conversations.get("conv_1").await.unwrap().unwrap();
    assert_eq!((got.turn_count, got.workspace.as_str()), (2, "w1"));

    // A completed turn's final record adds its turns and its tokens.
    let mut e = super::store::execution("exec_1", "agt_a", Status::Running, 10);
    e.conversation_id = Some("conv_1".into());
    s.executions.save(e.clone()).await.unwrap();
    let mut waiting = super::store::execution("exec_0b", "agt_a", Status::Queued, 11);
    waiting.conversation_id = Some("conv_1".into());
    s.executions.save(waiting.clone()).await.unwrap();
    let mut retry = super::store::execution("exec_2r", "agt_a", Status::Queued, 12);
    retry.conversation_id = Some("conv_1".into());
    retry.turn_key = Some("exec_0a".into());
    s.executions.save(retry.clone()).await.unwrap();
    let under_way = s.conversations.turns_under_way("conv_1").await.unwrap();
    let ids: Vec<(&str, &str)> = under_way.iter().map(|(i, k)| (i.as_str(), k.as_str())).collect();
    assert_eq!(
        ids,
        [("exec_2r", "exec_0a"), ("exec_0b", "exec_0b"), ("exec_1", "exec_1")],
        "in turn order: by turn key (its own id unless set), then id"
    );
    retry.status = Status::Cancelled;
    s.executions.save(retry).await.unwrap();
    waiting.status = Status::Cancelled;
    s.executions.save(waiting).await.unwrap();
    let (listed, _) = s
        .executions
        .list(ExecutionFilter {
            workspace: "w1".into(),
            conversation_id: Some("conv_1".into()),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let ids: Vec<&str> = listed.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(
        ids,
        ["exec_2r", "exec_1", "exec_0b"],
        "a conversation's turns, newest first"
    );
    e.status = Status::Completed;
    e.completed_at = Some(20);
    e.token_usage.total = 42;
    let turns = vec![
        Turn::new(TurnRole::User, "question".into(), "exec_1", 10),
        Turn::new(TurnRole::Assistant, "answer".into(), "exec_1", 20),
    ];
    s.executions
        .finish(FinalRecord {
            deliveries: Vec::new(),
            execution: e,
            logs: Vec::new(),
            steps: Vec::new(),
            events: Vec::new(),
            turns,
        })
        .await
        .unwrap();
    assert!(s.conversations.turns_under_way("conv_1").await.unwrap().is_empty());
    let got = s.conversations.get("conv_1").await.unwrap().unwrap();
    assert_eq!((got.turn_count, got.token_count, got.last_active_at), (4, 42, 20));
    let all = s.conversations.turns("conv_1").await.unwrap();
    let seqs: Vec<(u32, &str)> = all.iter().map(|t| (t.seq, t.content.as_str())).collect();
    assert_eq!(seqs, [(1, "hi"), (2, "hello"), (3, "question"), (4, "answer")]);
    assert_eq!(all[3].role, TurnRole::Assistant);
    assert_eq!(all[3].execution_id.as_deref(), Some("exec_1"));
    // The newest turns within a budget, oldest first, and whether it cut.
    let (recent, cut) = s.conversations.recent_turns("conv_1", 2, 1000).await.unwrap();
    let contents: Vec<&str> = recent.iter().map(|t| t.content.as_str()).collect();
    assert_eq!((contents, cut), (vec!["question", "answer"], true));
    let (recent, cut) = s.conversations.recent_turns("conv_1", 10, 1000).await.unwrap();
    assert_eq!((recent.len(), cut), (4, false));
    let (recent, cut) = s.conversations.recent_turns("conv_1", 10, 6).await.unwrap();
    assert_eq!((recent.len(), cut), (1, true), "a token budget of one turn");

    // Listing: by workspace, by agent, newest first, in pages.
    let page = |agent: Option<&str>, after: Option<&str>, limit| ConversationFilter {
        workspace: "w1".into(),
        agent_id: agent.map(Into::into),
        after: after.map(Into::into),
        limit,
    };
    let (rows, more) = s.conversations.list(page(None, None, 1)).await.unwrap();
    assert_eq!((rows[0].id.as_str(), more), ("conv_2", true));
    let (rows, more) = s.conversations.list(page(None, Some("conv_2"), 5)).await.unwrap();
    assert_eq!((rows.len(), rows[0].id.as_str(), more), (1, "conv_1", false));
    let (rows, _) = s.conversations.list(page(Some("agt_b"), None, 5)).await.unwrap();
    assert_eq!(rows.len(), 1);

    // Delete takes the turns and the session memory; the sweep the inactive.
    s.memory.put("conv_1", entry("k", "1")).await.unwrap();
    assert_eq!(s.memory.usage("conv_1").await.unwrap(), (2, 1));
    s.conversations.delete("conv_1").await.unwrap();
    assert!(s.conversations.get("conv_1").await.unwrap().is_none());
    assert!(s.conversations.turns("conv_1").await.unwrap().is_empty());
    assert!(s.memory.get("conv_1", "k").await.unwrap().is_none());
    assert_eq!(s.memory.usage("conv_1").await.unwrap(), (0, 0));
    // A turn ending after its conversation is gone adds nothing back.
    let mut late = super::store::execution("exec_2", "agt_a", Status::Completed, 30);
    late.conversation_id = Some("conv_1".into());
    late.completed_at = Some(31);
    s.executions
        .finish(FinalRecord {
            deliveries: Vec::new(),
            execution: late,
            logs: Vec::new(),
            steps: Vec::new(),
            events: Vec::new(),
            turns: vec![Turn::new(TurnRole::User, "late".into(), "exec_2", 30)],
        })
        .await
        .unwrap();
    assert!(s.conversations.turns("conv_1").await.unwrap().is_empty());
    s.conversations.sweep(8).await.unwrap();
    assert!(
        s.conversations.get("conv_2").await.unwrap().is_none(),
        "inactive since 7"
    );
    assert!(s.conversations.get("conv_3").await.unwrap().is_some(), "active at 8");
}

pub async fn memory(s: Stores) {
    let store = |id: &str, workspace: &str, name: &str| MemoryStoreInfo {
        id: id.into(),
        workspace: workspace.into(),
        name: name.into(),
        description: String::new(),
        max_bytes: 100,
        bytes: 0,
        entries: 0,
        created_at: 1,
    };
    s.memory.create_store(store("mem_1", "w1", "kb")).await.unwrap();
    s.memory.create_store(store("mem_2", "w2", "kb")).await.unwrap();
    s.memory.create_store(store("mem_3", "w1", "notes")).await.unwrap();
    // By id or name, within the workspace only.
    assert_eq!(s.memory.store("w1", "kb").await.unwrap().unwrap().id, "mem_1");
    assert_eq!(s.memory.store("w2", "kb").await.unwrap().unwrap().id, "mem_2");
    assert_eq!(s.memory.store("w1", "mem_1").await.unwrap().unwrap().name, "kb");
    assert!(s.memory.store("w2", "mem_1").await.unwrap().is_none());
    let (rows, more) = s.memory.stores("w1", None, 1).await.unwrap();
    assert_eq!((rows[0].name.as_str(), more), ("kb", true));
    let (rows, more) = s.memory.stores("w1", Some("kb".into()), 5).await.unwrap();
    assert_eq!((rows[0].name.as_str(), more), ("notes", false));

    // Entries, their usage kept as they change.
    s.memory.put("mem_1", entry("a:1", "\"x\"")).await.unwrap();
    s.memory.put("mem_1", entry("a:2", "[1,2]")).await.unwrap();
    s.memory.put("mem_1", entry("b", "true")).await.unwrap();
    assert_eq!(s.memory.usage("mem_1").await.unwrap(), (3 + 3 + 3 + 5 + 1 + 4, 3));
    s.memory.put("mem_1", entry("a:1", "\"longer\"")).await.unwrap();
    assert_eq!(s.memory.usage("mem_1").await.unwrap(), (3 + 8 + 3 + 5 + 1 + 4, 3));
    let info = s.memory.store("w1", "kb").await.unwrap().unwrap();
    assert_eq!((info.bytes, info.entries), (24, 3));
    assert_eq!(
        s.memory.get("mem_1", "a:1").await.unwrap().unwrap().value.get(),
        "\"longer\""
    );
    assert!(
        s.memory.get("mem_2", "a:1").await.unwrap().is_none(),
        "scopes do not mix"
    );
    let (page, more) = s.memory.entries("mem_1", "a:", None, 1).await.unwrap();
    assert_eq!((page[0].key.as_str(), more), ("a:1", true));
    let (page, more) = s.memory.entries("mem_1", "a:", Some("a:1".into()), 5).await.unwrap();
    assert_eq!((page.len(), page[0].key.as_str(), more), (1, "a:2", false));
    s.memory.remove("mem_1", "a:2").await.unwrap();
    s.memory.remove("mem_1", "a:2").await.unwrap();
    assert_eq!(s.memory.usage("mem_1").await.unwrap(), (3 + 8 + 1 + 4, 2));
    // Deleting a store deletes its entries; nothing is written into a memory
    // that does not exist.
    s.memory.delete_store("mem_1").await.unwrap();
    assert!(s.memory.store("w1", "kb").await.unwrap().is_none());
    assert!(s.memory.get("mem_1", "b").await.unwrap().is_none());
    assert!(!s.memory.exists("mem_1").await.unwrap());
    assert!(s.memory.exists("mem_3").await.unwrap());
    s.memory.put("mem_1", entry("c", "1")).await.unwrap();
    s.memory.put("conv_gone", entry("c", "1")).await.unwrap();
    assert!(s.memory.get("mem_1", "c").await.unwrap().is_none());
    assert_eq!(s.memory.usage("conv_gone").await.unwrap(), (0, 0));
}
