//! What the plugin benchmarks share: the event they time, and the timing.

use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmhook::event::Event;
use wasmhook::plugin::{CompiledPlugin, PluginRuntime};

/// A JSON event of `body`, as a sender would post it.
pub fn json_event(body: &[u8]) -> Event {
    Event {
        id: "evt_bench".into(),
        source: "bench".into(),
        event_type: "order.created".into(),
        received_at: 0,
        headers: vec![("content-type".into(), "application/json".into())],
        body: body.to_vec().into(),
    }
}

/// `warmup` untimed calls, then the time of each of `calls`, one at a time.
pub async fn time_calls(
    runtime: &PluginRuntime,
    plugin: &CompiledPlugin,
    event: &Event,
    config: &Arc<[(String, String)]>,
    warmup: usize,
    calls: usize,
) -> Vec<Duration> {
    for _ in 0..warmup {
        runtime.invoke(plugin, event, config.clone()).await.unwrap();
    }
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        let start = Instant::now();
        let out = runtime.invoke(plugin, event, config.clone()).await.unwrap();
        samples.push(start.elapsed());
        std::hint::black_box(out);
    }
    samples
}
