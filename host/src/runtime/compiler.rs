//! Compiling components, bounded. A component is compiled in a child process
//! (`warden compile-component`: the component on stdin, its compiled form on
//! stdout) with a wall-clock limit and a cap on the memory it may allocate; a
//! pathological component makes that child fail or be killed, never the host,
//! and whatever the compiler used is given back when the child exits. The
//! host loads what the child wrote into its own engine, which checks the
//! artifact was made for a compatible engine.
//!
//! At most `deploy.max_concurrent` compiles run at once (each may use all the
//! cores and `deploy.max_memory_mb`); more wait their turn (holding no copy of
//! their component meanwhile), so a burst of deploys cannot exhaust the
//! machine's memory.
//!
//! Without a program to run (a library user that sets none), components are
//! compiled in the host's process, without the time and memory limits.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use wasmtime::Engine;
use wasmtime::component::Component;

use super::component::ComponentError;
use crate::config::CompileConfig;

/// The subcommand of the `warden` binary that compiles one component.
pub const SUBCOMMAND: &str = "compile-component";
/// The child's exit code for a component that is not valid.
const INVALID: u8 = 2;
/// How often the host looks whether the child is done.
const POLL: Duration = Duration::from_millis(5);

/// A compiled component and, when it was compiled elsewhere, the bytes of its
/// compiled form (what the cache keeps).
pub struct Compiled {
    pub component: Component,
    pub serialized: Option<Vec<u8>>,
}

/// Where and within what limits components are compiled.
pub struct Compiler {
    program: Option<PathBuf>,
    timeout: Duration,
    max_memory_mb: u64,
    gate: Gate,
}

/// Lets at most `max` compiles run at once; the others wait their turn.
struct Gate {
    max: usize,
    counts: Mutex<Counts>,
    freed: Condvar,
}

/// Compiles running and waiting now.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub running: usize,
    pub waiting: usize,
}

/// A compile's turn: it runs until this drops.
pub struct Turn<'a>(&'a Gate);

impl Gate {
    fn counts(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Blocks until fewer than `max` compiles run (in no set order).
    fn enter(&self) -> Turn<'_> {
        let mut counts = self.counts();
        counts.waiting += 1;
        while counts.running >= self.max {
            counts = self.freed.wait(counts).unwrap_or_else(PoisonError::into_inner);
        }
        counts.waiting -= 1;
        counts.running += 1;
        Turn(self)
    }
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        self.0.counts().running -= 1;
        self.0.freed.notify_one();
    }
}

impl Compiler {
    pub fn new(config: &CompileConfig) -> Self {
        if config.program.is_none() {
            tracing::warn!("components compile in the host's own process, without a time or memory limit");
        }
        Self {
            program: config.program.clone(),
            timeout: Duration::from_millis(config.timeout_ms),
            max_memory_mb: config.max_memory_mb,
            gate: Gate {
                max: config.max_concurrent.max(1),
                counts: Mutex::default(),
                freed: Condvar::new(),
            },
        }
    }

    /// Compiles running and waiting for their turn now.
    pub fn counts(&self) -> Counts {
        *self.gate.counts()
    }

    /// Waits for a compile's turn (blocking): what needs one holds it while
    /// it compiles, and takes what it compiles into memory only then.
    pub fn turn(&self) -> Turn<'_> {
        self.gate.enter()
    }

    /// Compiles `wasm` for `engine`, in its turn. Blocking.
    pub fn compile(&self, _turn: &Turn<'_>, engine: &Engine, wasm: &[u8]) -> Result<Compiled, ComponentError> {
        let Some(program) = &self.program else {
            let component = Component::new(engine, wasm).map_err(|e| ComponentError::Invalid(format!("{e:#}")))?;
            return Ok(Compiled {
                component,
                serialized: None,
            });
        };
        let serialized = self.run_child(program, wasm)?;
        // SAFETY: these bytes are what `Engine::precompile_component` wrote in
        // our own child process, for an engine of this one's code settings,
        // read from its pipe into memory and deserialised from there; wasmtime
        // checks their header and engine compatibility and refuses others.
        let component = unsafe { Component::deserialize(engine, &serialized) }
            .map_err(|e| ComponentError::Internal(format!("loading what the compiler wrote: {e:#}")))?;
        Ok(Compiled {
            component,
            serialized: Some(serialized),
        })
    }

    fn run_child(&self, program: &PathBuf, wasm: &[u8]) -> Result<Vec<u8>, ComponentError> {
        let internal = |what: &str, e: std::io::Error| ComponentError::Internal(format!("{what} the compiler: {e}"));
        let mut child = Command::new(program)
            .arg(SUBCOMMAND)
            .arg(self.max_memory_mb.to_string())
            .env_clear()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| internal("starting", e))?;
        let (Some(mut stdin), Some(mut stdout), Some(mut stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(ComponentError::Internal("the compiler's pipes are missing".into()));
        };
        // Scoped threads: the writer borrows the component instead of copying
        // it, and the compiled form is read into room for about what a
        // component compiles to (two and a half times its size; pages never
        // written are never resident), not grown by doubling copies.
        let deadline = Instant::now() + self.timeout;
        let (status, out, message) = std::thread::scope(|scope| {
            let writer = scope.spawn(move || {
                let _ = stdin.write_all(wasm);
            });
            let reader = scope.spawn(move || {
                let mut out = Vec::with_capacity(wasm.len().saturating_mul(5) / 2);
                let _ = stdout.read_to_end(&mut out);
                out
            });
            let errors = scope.spawn(move || {
                let mut text = String::new();
                let _ = (&mut stderr).take(64 << 10).read_to_string(&mut text);
                text
            });
            let status = loop {
                match child.try_wait() {
                    Ok(Some(status)) => break Ok(Some(status)),
                    Ok(None) if Instant::now() >= deadline => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break Ok(None);
                    }
                    Ok(None) => std::thread::sleep(POLL),
                    Err(e) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break Err(e);
                    }
                }
            };
            let _ = writer.join();
            let out = reader.join().unwrap_or_default();
            let message = errors.join().unwrap_or_default();
            (status, out, message)
        });
        let status = status.map_err(|e| internal("waiting for", e))?;
        let message = message.trim();
        match status {
            None => Err(ComponentError::TooCostly(format!(
                "compiling it took longer than the host's limit of {} ms (deploy.timeout_ms)",
                self.timeout.as_millis()
            ))),
            Some(s) if s.success() => Ok(out),
            Some(s) if s.code() == Some(i32::from(INVALID)) => Err(ComponentError::Invalid(message.to_owned())),
            Some(s) => Err(ComponentError::TooCostly(format!(
                "compiling it needed more than the host's limit of {} MiB of memory (deploy.max_memory_mb), \
                 or failed otherwise ({s}){}",
                self.max_memory_mb,
                if message.is_empty() {
                    String::new()
                } else {
                    format!(": {message}")
                }
            ))),
        }
    }
}

/// The child's side: caps its own memory at `max_memory_mb`, reads a component
/// from stdin, and writes its compiled form to stdout (exit 2 and a message on
/// stderr for a component that is not valid).
pub fn compile_stdin_to_stdout(engine: &Engine, max_memory_mb: u64) -> u8 {
    const FAILURE: u8 = 1;
    let bytes = max_memory_mb.saturating_mul(1 << 20);
    let limit = libc::rlimit {
        rlim_cur: bytes,
        rlim_max: bytes,
    };
    // SAFETY: setrlimit only reads the struct it is given.
    if unsafe { libc::setrlimit(libc::RLIMIT_DATA, &limit) } != 0 {
        eprintln!(
            "could not cap the compiler's memory: {}",
            std::io::Error::last_os_error()
        );
        return FAILURE;
    }
    let mut wasm = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut wasm) {
        eprintln!("reading the component: {e}");
        return FAILURE;
    }
    match engine.precompile_component(&wasm) {
        Ok(compiled) => match std::io::stdout()
            .lock()
            .write_all(&compiled)
            .and_then(|()| std::io::stdout().flush())
        {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("writing the compiled component: {e}");
                FAILURE
            }
        },
        Err(e) => {
            eprintln!("{e:#}");
            INVALID
        }
    }
}
