//! The per-call store state, and the host side of the WIT imports.

use std::sync::Arc;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::stdio::CappedOutput;
use crate::event;

wasmtime::component::bindgen!({
    world: "plugin",
    path: "../plugin-sdk/wit",
    exports: { default: async },
});

pub use self::wasmhook::plugin::host::Level;
pub use self::wasmhook::plugin::types as wire;

/// Bytes of guest stdout+stderr kept per call; the rest is discarded.
const STDIO_CAPACITY: usize = 16 * 1024;
/// `log` calls honoured per call; the rest are counted and dropped.
const MAX_LOG_LINES: u32 = 100;
/// Longest `log` message kept, in bytes.
const MAX_LOG_LINE: usize = 4096;

/// Everything one plugin call's `Store` holds.
pub struct CallState {
    pub plugin: Arc<str>,
    pub event_id: String,
    /// The event's source: every line about the call names it.
    source: String,
    config: Arc<[(String, String)]>,
    wasi: WasiCtx,
    table: ResourceTable,
    pub stdio: CappedOutput,
    pub memory: MemoryCap,
    /// Epoch ticks of execution left before the deadline.
    pub ticks_left: u64,
    pub timed_out: bool,
    log_lines: u32,
    /// Set to keep this call's `log` lines as well as logging them.
    pub logs: Option<Vec<LogLine>>,
}

/// One `log` call of a plugin.
#[derive(Debug, Clone, serde::Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct LogLine {
    pub level: &'static str,
    pub message: String,
}

impl CallState {
    pub fn new(
        plugin: Arc<str>,
        event_id: String,
        source: String,
        received_at: u64,
        config: Arc<[(String, String)]>,
        memory_limit: usize,
        ticks: u64,
    ) -> Self {
        let stdio = CappedOutput::new(STDIO_CAPACITY);
        let wasi = wasi_for(&stdio, &event_id, received_at);
        CallState {
            plugin,
            event_id,
            source,
            config,
            wasi,
            table: ResourceTable::new(),
            stdio,
            memory: MemoryCap::new(memory_limit),
            ticks_left: ticks,
            timed_out: false,
            log_lines: 0,
            logs: None,
        }
    }

    /// Make a kept instance's state fit for its next event: that event's
    /// id, config, clocks and randomness, a fresh deadline, and empty output.
    /// Linear memory is not reset: that is the trade `plugins.reuse` makes.
    pub fn begin(
        &mut self,
        event_id: String,
        source: &str,
        received_at: u64,
        config: Arc<[(String, String)]>,
        ticks: u64,
    ) {
        self.stdio.clear();
        self.wasi = wasi_for(&self.stdio, &event_id, received_at);
        self.event_id = event_id;
        self.source.clear();
        self.source.push_str(source);
        self.config = config;
        self.memory.exceeded = false;
        self.ticks_left = ticks;
        self.timed_out = false;
        self.log_lines = 0;
    }

    /// Write what the guest printed to the log, one line each, tagged, and
    /// say once how much was cut.
    pub fn flush_stdio(&self) {
        let (bytes, dropped) = self.stdio.contents();
        for line in String::from_utf8_lossy(&bytes).lines() {
            if !line.trim().is_empty() {
                tracing::info!(plugin = %self.plugin, event_id = %self.event_id, source = %self.source,
                    stream = "stdio", "{line}");
            }
        }
        if dropped > 0 {
            tracing::warn!(plugin = %self.plugin, event_id = %self.event_id, source = %self.source, dropped_bytes = dropped,
                "plugin printed more than {STDIO_CAPACITY} bytes for one event; the rest was cut");
        }
    }

    /// Everything the guest printed (up to the capture's cap), as text.
    pub fn stdio_text(&self) -> String {
        let (bytes, _) = self.stdio.contents();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// The last few lines the guest printed: a panic message lives here.
    pub fn stdio_tail(&self) -> Option<String> {
        let (bytes, _) = self.stdio.contents();
        let text = String::from_utf8_lossy(&bytes);
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = lines[lines.len().saturating_sub(3)..].join(" | ");
        (!tail.is_empty()).then_some(tail)
    }
}

/// No preopens, env, args, network or stdin: the builder grants nothing by
/// default, and we add nothing but the captured output streams, and clocks
/// and randomness that depend on the event alone.
fn wasi_for(stdio: &CappedOutput, event_id: &str, received_at: u64) -> WasiCtx {
    let mut builder = wasmtime_wasi::WasiCtxBuilder::new();
    builder
        .stdout(stdio.clone())
        .stderr(stdio.clone())
        .allow_ip_name_lookup(false);
    super::determinism::for_event(&mut builder, event_id, received_at);
    builder.build()
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmhook::plugin::types::Host for CallState {}

impl wasmhook::plugin::host::Host for CallState {
    fn log(&mut self, level: Level, mut message: String) {
        self.log_lines += 1;
        if self.log_lines > MAX_LOG_LINES {
            if self.log_lines == MAX_LOG_LINES + 1 {
                tracing::warn!(plugin = %self.plugin, event_id = %self.event_id, source = %self.source,
                    "plugin logged more than {MAX_LOG_LINES} lines for one event; dropping the rest");
            }
            return;
        }
        if message.len() > MAX_LOG_LINE {
            let mut cut = MAX_LOG_LINE;
            while !message.is_char_boundary(cut) {
                cut -= 1;
            }
            message.truncate(cut);
            message.push('…');
        }
        if let Some(logs) = &mut self.logs {
            let name = match level {
                Level::Trace => "trace",
                Level::Debug => "debug",
                Level::Info => "info",
                Level::Warn => "warn",
                Level::Error => "error",
            };
            logs.push(LogLine {
                level: name,
                message: message.clone(),
            });
        }
        let (plugin, event_id, source) = (&*self.plugin, &self.event_id, &self.source);
        match level {
            Level::Trace => tracing::trace!(plugin, event_id, source, "{message}"),
            Level::Debug => tracing::debug!(plugin, event_id, source, "{message}"),
            Level::Info => tracing::info!(plugin, event_id, source, "{message}"),
            Level::Warn => tracing::warn!(plugin, event_id, source, "{message}"),
            Level::Error => tracing::error!(plugin, event_id, source, "{message}"),
        }
    }

    fn config(&mut self) -> Vec<(String, String)> {
        self.config.to_vec()
    }

    fn utf8_decode(&mut self, bytes: Vec<u8>) -> String {
        match String::from_utf8(bytes) {
            Ok(text) => text,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        }
    }

    fn utf8_encode(&mut self, text: String) -> Vec<u8> {
        text.into_bytes()
    }
}

/// Caps a call's linear memory, and remembers whether the cap was hit so the
/// resulting trap can be reported as "memory", not as a generic trap.
pub struct MemoryCap {
    limit: usize,
    pub exceeded: bool,
}

impl MemoryCap {
    fn new(limit: usize) -> Self {
        MemoryCap {
            limit,
            exceeded: false,
        }
    }
}

impl ResourceLimiter for MemoryCap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded = true;
            // A trap, not a failed `memory.grow`: a guest that handles the
            // failure would otherwise keep running at the cap until the deadline.
            wasmtime::bail!("memory cap of {} bytes reached", self.limit);
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The event as the WIT has it.
pub(super) fn to_wire(event: &event::Event) -> wire::Event {
    wire::Event {
        id: event.id.clone(),
        source: event.source.clone(),
        event_type: event.event_type.clone(),
        received_at: event.received_at,
        headers: event.headers.clone(),
        body: event.body.to_vec(),
    }
}

pub(super) fn from_wire(outcome: wire::Outcome) -> event::Outcome {
    match outcome {
        wire::Outcome::Drop(reason) => event::Outcome::Drop { reason },
        wire::Outcome::Emit(outputs) => event::Outcome::Emit(
            outputs
                .into_iter()
                .map(|o| event::Output {
                    event: event::Event {
                        id: o.event.id,
                        source: o.event.source,
                        event_type: o.event.event_type,
                        received_at: o.event.received_at,
                        headers: o.event.headers,
                        body: o.event.body.into(),
                    },
                    targets: o.targets,
                })
                .collect(),
        ),
    }
}
