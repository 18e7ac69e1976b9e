//! Identifiers: prefixed, time-sortable (`exec_01jd…`), unique within the process.
//!
//! The suffix is a monotonic ULID in lowercase, so ids sort by creation time and
//! cursor paging over them stays correct while new rows arrive.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{LazyLock, Mutex, PoisonError};

use ulid::{Generator, Ulid};

static GENERATOR: Mutex<Generator> = Mutex::new(Generator::new());

fn next() -> Ulid {
    let mut generator = GENERATOR.lock().unwrap_or_else(PoisonError::into_inner);
    // Overflow needs 2^80 ids within one millisecond; a fresh random one is then
    // still unique, only not strictly after the previous.
    generator.generate().unwrap_or_else(|_| Ulid::new())
}

fn with_prefix(prefix: &str) -> String {
    let mut id = String::with_capacity(prefix.len() + 26);
    id.push_str(prefix);
    for c in next().to_string().chars() {
        id.push(c.to_ascii_lowercase());
    }
    id
}

pub fn execution() -> String {
    with_prefix("exec_")
}

/// An HTTP request's id (`x-request-id`): the process's own random prefix and
/// a counter, so making one takes no lock and no clock.
pub fn request() -> String {
    static PREFIX: LazyLock<u64> = LazyLock::new(|| u64::from(next().random() as u32) << 32);
    static COUNT: AtomicU64 = AtomicU64::new(0);
    format!(
        "req_{:016x}",
        *PREFIX | (COUNT.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff)
    )
}

/// A W3C trace id: 32 hex digits, never all zeros (a ULID's 128 bits: time,
/// then 80 random ones, as the standard recommends for the right-hand part).
pub fn trace() -> String {
    format!("{:032x}", u128::from(next()))
}

pub fn agent() -> String {
    with_prefix("agt_")
}

pub fn artifact() -> String {
    with_prefix("art_")
}

pub fn api_key() -> String {
    with_prefix("key_")
}

pub fn agent_version() -> String {
    with_prefix("ver_")
}

pub fn host() -> String {
    with_prefix("host_")
}

pub fn deploy() -> String {
    with_prefix("dep_")
}

pub fn approval() -> String {
    with_prefix("apr_")
}

pub fn conversation() -> String {
    with_prefix("conv_")
}

pub fn memory_store() -> String {
    with_prefix("mem_")
}

pub fn schedule() -> String {
    with_prefix("sch_")
}

pub fn hook() -> String {
    with_prefix("hook_")
}

pub fn subscription() -> String {
    with_prefix("whk_")
}

pub fn message() -> String {
    with_prefix("msg_")
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_prefixed_and_sorted() {
        let ids: Vec<String> = (0..1000).map(|_| super::execution()).collect();
        assert!(ids.iter().all(|id| id.starts_with("exec_") && id.len() == 31));
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }
}
