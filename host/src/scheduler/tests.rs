//! The scheduler's mechanism, without executions: bound, dispatch, slots,
//! delays, cancel in every state, announcing ends.

use super::*;

struct T {
    id: String,
    agent: &'static str,
    priority: u8,
    slots: usize,
}

impl Job for T {
    fn id(&self) -> &str {
        &self.id
    }
    fn agent_id(&self) -> &str {
        self.agent
    }
    fn priority(&self) -> u8 {
        self.priority
    }
    fn max_concurrency(&self) -> usize {
        self.slots
    }
}

fn job(id: &str, agent: &'static str, priority: u8, slots: usize) -> T {
    T {
        id: id.to_owned(),
        agent,
        priority,
        slots,
    }
}

fn ids(started: &[Started<T>]) -> Vec<&str> {
    started.iter().map(|s| s.job.id.as_str()).collect()
}

#[test]
fn the_bound_counts_waiting_jobs_and_unused_reservations_give_room_back() {
    let s: Scheduler<T, u32> = Scheduler::new(1, 2);
    let r1 = s.reserve().unwrap();
    let r2 = s.reserve().unwrap();
    assert!(matches!(s.reserve(), Err(QueueFull(2))));
    drop(r2);
    s.queue(r1, job("a", "x", 50, 1), false);
    let _r3 = s.reserve().unwrap();
    assert!(s.reserve().is_err());
    // A job that starts leaves the waiting count.
    assert_eq!(ids(&s.dispatch()), ["a"]);
    assert_eq!(s.load(), (1, 1));
    // Accepted jobs (after a restart) pass the bound.
    let r = s.reserve_accepted();
    s.queue(r, job("b", "x", 50, 1), false);
    assert_eq!(s.load(), (1, 2));
}

#[test]
fn finished_jobs_free_their_slot_for_the_best_waiting_one() {
    let s: Scheduler<T, u32> = Scheduler::new(2, 100);
    for (id, p) in [("low", 10), ("high", 90), ("mid", 50)] {
        let r = s.reserve().unwrap();
        s.queue(r, job(id, "x", p, 1), false);
    }
    // Nothing starts before dispatch: a restart queues everything first.
    assert_eq!(s.load(), (0, 3));
    assert_eq!(ids(&s.dispatch()), ["high"]);
    assert!(s.dispatch().is_empty(), "one slot for agent x");
    let mut watch = s.watch("high").unwrap();
    assert_eq!(ids(&s.finished("x")), ["mid"]);
    s.announce("high", Some(7));
    assert_eq!(*watch.borrow_and_update(), Some(7));
    assert!(s.watch("high").is_none(), "forgotten once announced");
    assert_eq!(s.live_agent("mid").as_deref(), Some("x"));
    assert_eq!(s.agent_load("x"), (1, 1));
}

#[test]
fn a_delayed_job_waits_for_its_delay_to_end() {
    let s: Scheduler<T, u32> = Scheduler::new(4, 100);
    let r = s.reserve().unwrap();
    s.queue(r, job("later", "x", 50, 1), true);
    assert!(s.dispatch().is_empty());
    assert_eq!(s.load(), (0, 1));
    assert_eq!(ids(&s.end_delay("later")), ["later"]);
    assert!(s.end_delay("later").is_empty(), "only once");
    assert!(s.end_delay("nobody").is_empty());
}

#[test]
fn cancel_in_every_state() {
    let s: Scheduler<T, u32> = Scheduler::new(1, 100);
    for id in ["run", "queued"] {
        let r = s.reserve().unwrap();
        s.queue(r, job(id, "x", 50, 1), false);
    }
    let r = s.reserve().unwrap();
    s.queue(r, job("delayed", "x", 50, 1), true);
    let mut started = s.dispatch();
    assert_eq!(ids(&started), ["run"]);
    assert!(matches!(s.cancel("run"), Cancel::Signalled));
    assert!(
        started[0].cancel.try_recv().is_ok(),
        "the running job was asked to stop"
    );
    assert!(matches!(s.cancel("run"), Cancel::AlreadyRequested));
    match s.cancel("queued") {
        Cancel::Dequeued { job, done } => {
            assert_eq!(job.id, "queued");
            done.send_replace(Some(1));
        }
        _ => panic!("a queued job is dequeued"),
    }
    assert!(matches!(s.cancel("delayed"), Cancel::Dequeued { .. }));
    assert!(s.end_delay("delayed").is_empty(), "a cancelled delay never starts");
    assert!(matches!(s.cancel("queued"), Cancel::NotLive));
    assert_eq!(s.load(), (1, 0));
    assert!(s.finished("x").is_empty());
    assert_eq!(s.load(), (0, 0));
}

#[test]
fn a_paused_scheduler_starts_nothing_more() {
    let s: Scheduler<T, u32> = Scheduler::new(4, 100);
    for id in ["a", "b"] {
        let r = s.reserve().unwrap();
        s.queue(r, job(id, "x", 50, 1), false);
    }
    assert_eq!(ids(&s.dispatch()), ["a"]);
    s.pause();
    assert!(s.finished("x").is_empty(), "b waits for the next start");
    assert_eq!(s.load(), (0, 1));
}

#[test]
fn jobs_followed_elsewhere_hold_their_place_until_claimed_here_or_announced() {
    let s: Scheduler<T, u32> = Scheduler::new(2, 3);
    // Accepted here, waiting in the shared queue: counted against the bound,
    // not against the room to claim.
    let a = s.follow(Some(s.reserve().unwrap()), "a", "x");
    // Nobody waits for b here (an async caller).
    drop(s.follow(Some(s.reserve().unwrap()), "b", "x"));
    assert_eq!((s.load(), s.room()), ((0, 2), 2));
    let mut followed = s.elsewhere();
    followed.sort();
    assert_eq!(
        followed,
        [("a".to_owned(), true), ("b".to_owned(), false)],
        "only a's end is awaited"
    );
    assert!(s.is_elsewhere("a") && s.is_elsewhere("b"));
    // A cancel leaves it to the caller (to claim it first).
    assert!(matches!(s.cancel("a"), Cancel::Elsewhere));
    // Claimed here: it joins this host's queue and runs; its follower hears its end.
    assert_eq!(s.claimed(job("a", "x", 50, 1)), Some(true), "it was followed here");
    assert_eq!(s.room(), 1);
    assert_eq!(ids(&s.dispatch()), ["a"]);
    assert_eq!((s.load(), s.room()), ((1, 1), 1));
    s.finished("x");
    s.announce("a", Some(7));
    assert_eq!(*a.borrow(), Some(7));
    // Another host ran it: announced from the store; its place is given back.
    s.announce("b", Some(8));
    assert_eq!((s.load(), s.room()), ((0, 0), 2));
    // Claimed here without a follower: it takes a place until it runs.
    assert_eq!(s.claimed(job("c", "x", 50, 1)), Some(false));
    assert_eq!((s.load(), s.room()), ((0, 1), 1));
    // Followed for a caller (not accepted here): no place; unfollowed to end it at once.
    drop(s.follow(None, "d", "y"));
    assert_eq!(s.load(), (0, 1));
    assert!(s.unfollow("d", true).is_some(), "nobody waits");
    assert!(s.unfollow("d", false).is_none());
    let waited = s.follow(None, "e", "y");
    assert!(s.unfollow("e", true).is_none(), "somebody waits");
    drop(waited);
    // Claimed again while it is here already (queued): nothing changes.
    assert_eq!(s.claimed(job("c", "x", 50, 1)), None);
    assert_eq!(s.load(), (0, 1));
    // Given back (the host shuts down): followed again, its place kept, out of the queue.
    assert!(s.give_back("c"));
    assert!(s.is_elsewhere("c") && !s.give_back("c"));
    assert_eq!((s.load(), s.room()), ((0, 1), 2));
    assert!(s.dispatch().is_empty());
    // The host pauses: nothing to claim.
    s.pause();
    assert_eq!(s.room(), 0);
}

#[test]
fn a_job_another_host_took_over_is_stopped_and_followed() {
    let s: Scheduler<T, u32> = Scheduler::new(2, 4);
    let running = s.queue(s.reserve().unwrap(), job("a", "x", 50, 2), false);
    let mut started = s.dispatch();
    let queued = s.queue(s.reserve().unwrap(), job("b", "x", 50, 1), false);
    assert_eq!(s.here().len(), 2);
    // Queued: out of the queue, followed, its place in the bound kept.
    assert!(s.surrender("b"));
    assert!(s.is_elsewhere("b") && s.dispatch().is_empty());
    assert_eq!(s.load(), (1, 1));
    // Running: asked to stop; its end here is not announced, and it is followed.
    assert!(s.surrender("a"));
    assert!(started[0].cancel.try_recv().is_ok());
    assert!(s.here().is_empty());
    assert!(s.finished("x").is_empty());
    s.announce("a", Some(1));
    assert_eq!(*running.borrow(), None);
    assert!(s.is_elsewhere("a"));
    // Its end as the other host stored it is.
    s.announce("a", Some(2));
    assert_eq!(*running.borrow(), Some(2));
    s.announce("b", Some(3));
    assert_eq!(*queued.borrow(), Some(3));
    assert_eq!(s.load(), (0, 0));
    assert!(!s.surrender("b"));
}

#[test]
fn a_job_taken_out_to_be_cancelled_that_another_host_holds_is_followed_again() {
    let s: Scheduler<T, u32> = Scheduler::new(1, 4);
    let _running = s.queue(s.reserve().unwrap(), job("a", "x", 50, 1), false);
    let _started = s.dispatch();
    let waiting = s.queue(s.reserve().unwrap(), job("b", "x", 50, 1), false);
    let Cancel::Dequeued { done, .. } = s.cancel("b") else {
        panic!("b waited in the queue");
    };
    assert_eq!(s.load(), (1, 0));
    // Its end could not be stored here (another host holds it): whoever
    // waits hears the end that host stores, and it takes no place here.
    assert!(s.refollow("b", "x", done));
    assert!(s.is_elsewhere("b"));
    assert_eq!(s.elsewhere(), [("b".to_owned(), true)]);
    assert_eq!(s.load(), (1, 0));
    s.announce("b", Some(5));
    assert_eq!(*waiting.borrow(), Some(5));
    assert!(!s.is_elsewhere("b"));
    // Not when it is live here again.
    let again = s.queue(s.reserve().unwrap(), job("c", "x", 50, 1), false);
    let (other, _) = tokio::sync::watch::channel(None);
    assert!(!s.refollow("c", "x", other));
    s.announce("c", Some(6));
    assert_eq!(*again.borrow(), Some(6));
}

#[test]
fn a_held_job_is_delayed_and_takes_no_room_until_it_joins_the_queue() {
    let s: Scheduler<T, u32> = Scheduler::new(2, 10);
    // Two held (delayed): they take no room.
    s.queue(s.reserve().unwrap(), job("held_1", "x", 50, 1), true);
    s.queue(s.reserve().unwrap(), job("held_2", "x", 50, 1), true);
    assert!(s.is_delayed("held_1") && s.is_delayed("held_2"));
    assert_eq!(s.room(), 2);
    // One let go: queued, then running; no longer delayed.
    assert_eq!(ids(&s.end_delay("held_1")), ["held_1"]);
    assert!(!s.is_delayed("held_1"));
    assert_eq!(s.room(), 1);
    // A queued job (its agent's one slot busy) takes room.
    s.queue(s.reserve().unwrap(), job("queued", "x", 50, 1), false);
    assert!(s.dispatch().is_empty());
    assert_eq!(s.room(), 0);
    // A cancelled held job is no longer delayed.
    assert!(matches!(s.cancel("held_2"), Cancel::Dequeued { .. }));
    assert!(!s.is_delayed("held_2"));
}
