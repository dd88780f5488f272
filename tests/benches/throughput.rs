//! End to end through the real binary: ingest → plugin → signed delivery to a
//! local sink, beside a raw HTTP hop (the load generator straight into the
//! same sink) measured in the same run. Run with `cargo xtask bench
//! throughput`; `cargo xtask bench throughput -- raw e2e` runs only those
//! parts (raw, e2e, postgres, logs, controls, telemetry, rate, flat,
//! backlog); `e2e-memory`,
//! `e2e-fsync` and `e2e-nofsync` run one storage of `e2e` (for profiling
//! one of them). `postgres` runs a throwaway PostgreSQL server (fsync on)
//! and one router on it, then two sharing it (each fed by a generator
//! thread of its own, half the senders each), beside SQLite with fsync.
//!
//! The load generator and the sink run one thread each (see
//! `wasmhook_e2e::load`), in this process; the router is its own process
//! and has the rest of the machine. Bodies are about 1 KiB of JSON. Every
//! event is acknowledged (202) only after its commit. Each run starts after
//! a `sync`, so none pays for the disk writes of the one before.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use wasmhook_e2e::load::{self, Pace, Sink, quantile};
use wasmhook_e2e::{Router, Setup};

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
const REDACT: &str = "{ name = \"redact\", config = { fields = \"/user/email,/card\" } }";
const SENDERS: usize = 32;
const E2E_EVENTS: u64 = 20_000;
const CLOSED: Pace = Pace::Closed {
    connections: SENDERS,
};

/// About 1 KiB of JSON, with fields for `redact` to remove.
fn body() -> String {
    let note = "benchmark payload padding ".repeat(34);
    format!(
        r#"{{"type":"order.created","user":{{"email":"ann@example.com","name":"Ann"}},"card":"4242424242424242","items":[{{"sku":"A-1","qty":2}},{{"sku":"B-7","qty":1}}],"note":"{note}"}}"#
    )
}

#[derive(Clone, Copy, PartialEq)]
enum Storage {
    Memory,
    Fsync,
    NoFsync,
    /// PostgreSQL (fsync on), with this many routers sharing it.
    Postgres(usize),
}

impl Storage {
    /// The part name that runs only this storage's e2e runs.
    fn part(self) -> &'static str {
        match self {
            Storage::Memory => "e2e-memory",
            Storage::Fsync => "e2e-fsync",
            Storage::NoFsync => "e2e-nofsync",
            Storage::Postgres(_) => "postgres",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Storage::Memory => "memory://",
            Storage::Fsync => "sqlite, fsync",
            Storage::NoFsync => "sqlite, no fsync",
            Storage::Postgres(1) => "postgres, 1 node",
            Storage::Postgres(_) => "postgres, 2 nodes",
        }
    }
}

struct Scenario<'a> {
    storage: Storage,
    /// The database, for `Storage::Postgres`.
    pg_url: &'a str,
    plugin: bool,
    target_extra: &'a str,
    storage_extra: &'a str,
    /// Tables before the sources (`[telemetry]`, say).
    top_extra: &'a str,
    /// `RUST_LOG` for the router; empty: its default level.
    log: &'a str,
}

/// SQLite with fsync and the `redact` plugin, the issue's own benchmark,
/// with this in the target's table and this `RUST_LOG`.
fn fsync_redact<'a>(target_extra: &'a str, log: &'a str) -> Scenario<'a> {
    Scenario {
        pg_url: "",
        storage: Storage::Fsync,
        plugin: true,
        target_extra,
        storage_extra: "",
        top_extra: "",
        log,
    }
}

/// Flush what earlier runs left for the disk to write, so that a run's
/// fsyncs do not queue behind another run's writeback.
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

async fn router(sink: &Sink, s: &Scenario<'_>) -> Router {
    settle();
    let plugins = if s.plugin { REDACT } else { "" };
    let config = format!(
        "{}[[sources]]\nname = \"s\"\n\n\
         [[targets]]\nname = \"t\"\nurl = \"{}\"\nsigning_secret = \"{SECRET}\"\nmax_in_flight = 64\n{}\n\n\
         [[routes]]\nname = \"r\"\nsource = \"s\"\nplugins = [{plugins}]\ntargets = [\"t\"]\n",
        s.top_extra,
        sink.url("t"),
        s.target_extra,
    );
    let fsync = if s.storage == Storage::NoFsync {
        "fsync = false\n"
    } else {
        ""
    };
    Router::with(Setup {
        config: &config,
        plugins: if s.plugin { &["redact"] } else { &[] },
        durable: s.storage != Storage::Memory,
        storage_extra: &format!("{fsync}{}", s.storage_extra),
        storage_url: s.pg_url,
        log: s.log,
        ..Setup::default()
    })
    .await
}

/// Send from the load generator's thread, expecting 202s, without blocking
/// this runtime.
async fn ingest(url: String, body: &str, n: u64, pace: Pace) -> load::LoadReport {
    let body = body.to_string();
    tokio::task::spawn_blocking(move || load::send(&url, &body, n, pace, 202))
        .await
        .unwrap()
}

fn check(report: &load::LoadReport, what: &str) {
    assert!(
        report.unexpected.is_empty(),
        "{what}: unexpected answers (status, count): {:?}",
        report.unexpected
    );
}

/// The generator straight into the sink: what loopback, one sending thread
/// and one receiving thread can do.
fn raw_hop(body: &str) -> f64 {
    let sink = Sink::start();
    let n = 100_000;
    let report = load::send(&sink.url("raw"), body, n, CLOSED, 200);
    check(&report, "raw hop");
    let rate = n as f64 / report.elapsed.as_secs_f64();
    let lat = sink.take_latencies();
    println!(
        "raw HTTP hop                      {n} requests, {SENDERS} senders: {rate:>7.0} requests/s   p50 {:>5.2} ms  p99 {:>5.2} ms",
        quantile(&lat, 0.5) as f64 / 1e3,
        quantile(&lat, 0.99) as f64 / 1e3,
    );
    rate
}

/// A closed loop of `n` events; returns delivered/s. With several
/// PostgreSQL nodes, each gets an equal share of the events and senders
/// (from one generator thread per node).
async fn end_to_end(s: Scenario<'_>, body: &str, n: u64, raw: f64) -> f64 {
    let sink = Sink::start();
    let nodes = match s.storage {
        Storage::Postgres(k) => k,
        _ => 1,
    };
    let mut routers = Vec::new();
    for _ in 0..nodes {
        routers.push(router(&sink, &s).await);
    }
    let pace = Pace::Closed {
        connections: SENDERS / nodes,
    };
    let cost = Cost::start(routers.iter().map(Router::pid).collect());
    let start = Instant::now();
    // Each node's generator on its thread, all at once.
    let running: Vec<_> = routers
        .iter()
        .map(|r| {
            let (url, body) = (r.url("/ingest/s"), body.to_string());
            let share = n / nodes as u64;
            tokio::task::spawn_blocking(move || load::send(&url, &body, share, pace, 202))
        })
        .collect();
    let mut reports = Vec::new();
    for r in running {
        let report = r.await.unwrap();
        check(&report, "ingest");
        reports.push(report);
    }
    let report = reports
        .into_iter()
        .max_by_key(|r| r.elapsed)
        .expect("one node at least");
    assert!(
        sink.wait_for(n, Duration::from_secs(600)).await,
        "only {} of {n} delivered",
        sink.received()
    );
    let delivered = start.elapsed();
    let cost = cost.report(n);
    let commits = store_commits(&routers[0], n / nodes as u64).await;
    let lat = sink.take_latencies();
    let rate = n as f64 / delivered.as_secs_f64();
    println!(
        "{:<17} {:<15} {n} events, {SENDERS} senders: ingest {:>6.0}/s, delivered {rate:>6.0}/s ({:.3} of raw)  e2e p50 {:>6.2} ms  p99 {:>6.2} ms  {cost}{commits}",
        s.storage.label(),
        if s.plugin {
            "redact plugin"
        } else {
            "no plugin"
        },
        n as f64 / report.elapsed.as_secs_f64(),
        rate / raw,
        quantile(&lat, 0.5) as f64 / 1e3,
        quantile(&lat, 0.99) as f64 / 1e3,
    );
    rate
}

/// The store's commits and jobs per event, from the router's `/metrics`
/// (`n`: the events it took).
async fn store_commits(router: &Router, n: u64) -> String {
    let commits = router
        .metric("wasmhook_store_commit_batch_size_count")
        .await;
    let jobs = router.metric("wasmhook_store_commit_batch_size_sum").await;
    if commits == 0.0 {
        return String::new();
    }
    format!(
        ", store {:.2} commits and {:.1} jobs/event",
        commits / n as f64,
        jobs / n as f64
    )
}

/// An open loop at a fixed rate: the latency a sender sees below saturation.
async fn fixed_rate(per_second: u64, seconds: u64, body: &str) {
    let sink = Sink::start();
    let s = Scenario {
        pg_url: "",
        storage: Storage::Fsync,
        plugin: true,
        target_extra: "",
        storage_extra: "",
        top_extra: "",
        log: "",
    };
    let router = router(&sink, &s).await;
    let url = router.url("/ingest/s");
    let n = per_second * seconds;
    let report = ingest(
        url,
        body,
        n,
        Pace::Open {
            per_second,
            connections: 256,
        },
    )
    .await;
    check(&report, "ingest");
    assert!(sink.wait_for(n, Duration::from_secs(600)).await);
    let lat = sink.take_latencies();
    println!(
        "{:<17} redact plugin   {n} events at {per_second}/s offered (open loop): delivered {:>6.0}/s  e2e p50 {:>6.2} ms  p99 {:>6.2} ms  p99.9 {:>6.2} ms  max {:>6.2} ms",
        s.storage.label(),
        n as f64 / report.elapsed.as_secs_f64(),
        quantile(&lat, 0.5) as f64 / 1e3,
        quantile(&lat, 0.99) as f64 / 1e3,
        quantile(&lat, 0.999) as f64 / 1e3,
        quantile(&lat, 1.0) as f64 / 1e3,
    );
}

/// How long the flat run keeps delivered work (and events with none left).
/// Retention prunes what was delivered that long before (at this rate, a
/// pass each 100 ms or so), so pruning runs from the run's first seconds on
/// and both windows pay for it, and the ratio shows a decline over time
/// more than what pruning costs. (The first whole second still runs on a
/// new database, growing, before or as pruning begins: the per-second CPU
/// line shows it.)
const FLAT_RETENTION: &str = "1s";

/// A long closed loop with retention pruning as it goes: does the rate hold?
async fn flat(n: u64, body: &str) {
    let sink = Sink::start();
    let s = Scenario {
        pg_url: "",
        storage: Storage::Fsync,
        plugin: true,
        target_extra: "",
        storage_extra: &format!(
            "retention = \"{FLAT_RETENTION}\"\ndedup_window = \"{FLAT_RETENTION}\"\n"
        ),
        top_extra: "",
        log: "",
    };
    let router = router(&sink, &s).await;
    let url = router.url("/ingest/s");
    let first_second = sink.second_now();
    let meter = SecondMeter::start(&sink, router.pid());
    let report = ingest(url, body, n, CLOSED).await;
    check(&report, "ingest");
    assert!(sink.wait_for(n, Duration::from_secs(900)).await);
    let usage = meter.stop();
    // Whole seconds only: the first and last are partial.
    let per_second = sink.per_second();
    let whole = first_second + 1..per_second.len().saturating_sub(1);
    let seconds = &per_second[whole.clone()];
    let window = 10.min(seconds.len() / 2).max(1);
    let rate = |s: &[u64]| s.iter().sum::<u64>() as f64 / s.len() as f64;
    let first = rate(&seconds[..window]);
    let last = rate(&seconds[seconds.len() - window..]);
    let slowest = seconds.iter().min().copied().unwrap_or(0);
    let lat = sink.take_latencies();
    // What each window cost the router per event, and what the machine's
    // neighbours took meanwhile: a last window slower for the router's own
    // work shows in the first, one slowed by the machine in the second.
    let cost = |from: usize, to: usize| {
        let events = seconds[from..to].iter().sum();
        usage
            .at(whole.start + to)
            .since(&usage.at(whole.start + from), events)
    };
    println!(
        "{:<17} redact plugin   {n} events, {SENDERS} senders, retention {FLAT_RETENTION}: first {window} s {first:>6.0}/s, last {window} s {last:>6.0}/s ({:.2} of first), slowest second {slowest}/s  e2e p99 {:>6.2} ms",
        s.storage.label(),
        last / first,
        quantile(&lat, 0.99) as f64 / 1e3,
    );
    println!(
        "    first {window} s: {}; last {window} s: {}",
        cost(0, window),
        cost(seconds.len() - window, seconds.len())
    );
    println!("    per second: {seconds:?}");
    // Each second's cost, to tell a step (pruning starting) from a climb.
    let by_second: Vec<String> = (0..seconds.len())
        .map(|i| {
            let (from, to) = (usage.at(whole.start + i), usage.at(whole.start + i + 1));
            let cpu = to.per_event(&from, seconds[i]);
            format!("{:.0}/{:.0}", cpu.store_cpu, cpu.router_cpu)
        })
        .collect();
    println!(
        "    CPU µs per event by second (store thread/router): {}",
        by_second.join(" ")
    );
}

/// [`Usage`] at the start of each of the sink's seconds, read by a thread
/// of its own as each second begins.
struct SecondMeter {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<Vec<Usage>>,
}

/// The routers' CPU time, their store threads' and their store's log
/// threads' (fsync, checkpoint), and the machine's ticks and steal, as
/// read at one moment.
#[derive(Clone, Copy, Default)]
struct Usage {
    router_cpu: f64,
    store_cpu: f64,
    log_cpu: f64,
    total: u64,
    steal: u64,
}

impl Usage {
    fn read(pids: &[u32]) -> Self {
        let (total, steal) = machine_ticks();
        Usage {
            router_cpu: pids.iter().map(|p| cpu_secs(*p)).sum(),
            store_cpu: pids.iter().map(|p| threads_cpu_secs(*p, STORE)).sum(),
            log_cpu: pids.iter().map(|p| threads_cpu_secs(*p, LOG)).sum(),
            total,
            steal,
        }
    }

    /// "router X µs CPU/event (store thread Y, fsync and checkpoint W),
    /// steal Z %", for `events` since `earlier` (without the store's threads
    /// for a store that has none: `memory://`, PostgreSQL).
    fn since(&self, earlier: &Usage, events: u64) -> String {
        let stolen = self.steal.saturating_sub(earlier.steal) as f64
            / self.total.saturating_sub(earlier.total).max(1) as f64;
        let cpu = self.per_event(earlier, events);
        let store = if cpu.store_cpu > 0.0 {
            format!(
                " (store thread {:>3.0}, fsync and checkpoint {:>2.0})",
                cpu.store_cpu, cpu.log_cpu
            )
        } else {
            String::new()
        };
        format!(
            "router {:>4.0} µs CPU/event{store}, steal {:>2.0} %",
            cpu.router_cpu,
            stolen * 100.0
        )
    }

    /// The CPU times since `earlier`, in µs per one of `events` (the
    /// machine's ticks left out).
    fn per_event(&self, earlier: &Usage, events: u64) -> Usage {
        let per_event = |now: f64, then: f64| (now - then) * 1e6 / events.max(1) as f64;
        Usage {
            router_cpu: per_event(self.router_cpu, earlier.router_cpu),
            store_cpu: per_event(self.store_cpu, earlier.store_cpu),
            log_cpu: per_event(self.log_cpu, earlier.log_cpu),
            ..Usage::default()
        }
    }
}

/// [`Usage`] at the start of each second since the sink started.
struct Usages(Vec<Usage>);

impl Usages {
    /// At the start of second `s` (the nearest one read, if the thread
    /// missed it).
    fn at(&self, s: usize) -> Usage {
        let i = s.min(self.0.len().saturating_sub(1));
        self.0.get(i).copied().unwrap_or_default()
    }
}

impl SecondMeter {
    fn start(sink: &Sink, pid: u32) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let origin = sink.started();
        let thread = std::thread::spawn(move || {
            let mut at = Vec::new();
            loop {
                let usage = Usage::read(&[pid]);
                // Read as each second begins; one this thread woke too
                // late for reads as the next. The meter stops at the next
                // second's start, after the run's last second has begun.
                let second = origin.elapsed().as_secs() as usize;
                if at.len() <= second {
                    at.resize(second + 1, usage);
                }
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let next = origin + Duration::from_secs(second as u64 + 1);
                // A thread of its own, outside the runtime: it pauses only
                // itself, until the next second.
                #[allow(clippy::disallowed_methods)]
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            at
        });
        SecondMeter { stop, thread }
    }

    fn stop(self) -> Usages {
        self.stop.store(true, Ordering::Relaxed);
        Usages(self.thread.join().unwrap())
    }
}

/// CPU time a process has used so far (all its threads, user and system),
/// in seconds (Linux).
fn cpu_secs(pid: u32) -> f64 {
    stat_cpu_secs(&format!("/proc/{pid}/stat"))
}

/// The SQLite store's writer thread.
const STORE: &[&str] = &["wasmhook-store"];
/// The SQLite store's threads that fsync and checkpoint its log (the
/// kernel keeps the first 15 bytes of a thread's name).
const LOG: &[&str] = &["wasmhook-sync", "wasmhook-checkp"];

/// CPU time the threads of a process named one of `names` have used so
/// far, in seconds (0 if there are none).
fn threads_cpu_secs(pid: u32, names: &[&str]) -> f64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0.0;
    };
    tasks
        .flatten()
        .filter(|t| {
            std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| names.contains(&c.trim()))
        })
        .map(|t| stat_cpu_secs(&t.path().join("stat").to_string_lossy()))
        .sum()
}

/// The CPU time in a `/proc` `stat` file (a process's or a thread's).
fn stat_cpu_secs(path: &str) -> f64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // After the command name, which is in parentheses and may hold spaces:
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after it.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    (ticks(11) + ticks(12)) / USER_HZ
}

/// `/proc` counts CPU time in USER_HZ ticks, which Linux fixes at 100 a
/// second for user space whatever the kernel's own tick.
const USER_HZ: f64 = 100.0;

/// The machine's CPU time so far, and how much of it the hypervisor gave to
/// others ("steal"), in ticks: a shared machine's noise, made visible.
fn machine_ticks() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .filter_map(|f| f.parse().ok())
        .collect();
    (cpu.iter().sum(), cpu.get(7).copied().unwrap_or(0))
}

/// What a run cost: the routers' CPU time per event, and the share of the
/// machine's time stolen by its neighbours meanwhile.
struct Cost {
    pids: Vec<u32>,
    start: Usage,
}

impl Cost {
    fn start(pids: Vec<u32>) -> Self {
        let start = Usage::read(&pids);
        Cost { pids, start }
    }

    fn report(&self, events: u64) -> String {
        Usage::read(&self.pids).since(&self.start, events)
    }
}

/// Resident memory of a process, and its peak, in MiB (Linux).
fn rss_mib(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// A backlog on disk: the target refuses everything, so deliveries pile up.
/// Memory must stay bounded by configuration, whatever the backlog's size.
/// The circuit breaker is off, so that every delivery's first attempt is
/// made (and counted by the sink) however long the target refuses.
async fn backlog(n: u64) {
    let sink = Sink::start();
    sink.answer(503);
    let s = Scenario {
        pg_url: "",
        storage: Storage::Fsync,
        plugin: false,
        target_extra: "retry_schedule = [\"1h\"]\ncircuit = false",
        storage_extra: "",
        top_extra: "",
        log: "",
    };
    let router = router(&sink, &s).await;
    let url = router.url("/ingest/s");
    let big = format!(r#"{{"type":"big","pad":"{}"}}"#, "x".repeat(64 * 1024 - 32));
    let (rss_start, _) = rss_mib(router.pid());
    let report = ingest(url, &big, n, CLOSED).await;
    check(&report, "ingest");
    assert!(sink.wait_for(n, Duration::from_secs(900)).await);
    let (rss_end, peak) = rss_mib(router.pid());
    println!(
        "{:<17} no plugin       {n} events of 64 KiB, target down: ingest {:>5.0}/s; router RSS {rss_start:.0} MiB at start, {rss_end:.0} MiB with the backlog, peak {peak:.0} MiB",
        s.storage.label(),
        n as f64 / report.elapsed.as_secs_f64(),
    );
}

fn main() {
    let parts: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |part: &str| parts.is_empty() || parts.iter().any(|p| p == part);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let body = body();
    println!(
        "load generator and sink: one thread each; bodies {} B of JSON; fsync on unless said",
        body.len() + r#""sent_us":1000000000,"#.len()
    );
    rt.block_on(async {
        let raw = raw_hop(&body);
        let storages: Vec<Storage> = [Storage::Memory, Storage::Fsync, Storage::NoFsync]
            .into_iter()
            .filter(|s| run("e2e") || parts.iter().any(|p| p == s.part()))
            .collect();
        if !storages.is_empty() {
            let mut best = None;
            for &storage in &storages {
                for plugin in [false, true] {
                    let s = Scenario {
                        pg_url: "",
                        storage,
                        plugin,
                        target_extra: "",
                        storage_extra: "",
                        top_extra: "",
                        log: "",
                    };
                    let rate = end_to_end(s, &body, E2E_EVENTS, raw).await;
                    if storage == Storage::Fsync && plugin {
                        best = Some(rate);
                    }
                }
            }
            let again = raw_hop(&body);
            if let Some(best) = best {
                println!(
                    "sqlite, fsync, redact: {:.3} of the raw hop (raw measured {raw:.0} before and {again:.0} after)",
                    best / raw.max(again),
                );
            }
        }
        if run("postgres") {
            // Fsync on, as the SQLite figure beside it.
            match wasmhook_testpg::start(true) {
                Ok(server) => {
                    for storage in [Storage::Fsync, Storage::Postgres(1), Storage::Postgres(2)] {
                        let url = match storage {
                            Storage::Postgres(_) => server.database(),
                            _ => String::new(),
                        };
                        let s = Scenario {
                            pg_url: &url,
                            storage,
                            plugin: true,
                            target_extra: "",
                            storage_extra: "",
                            top_extra: "",
                            log: "",
                        };
                        end_to_end(s, &body, E2E_EVENTS, raw).await;
                    }
                }
                Err(why) => println!("postgres: skipped ({why})"),
            }
        }
        if run("logs") {
            // What logging costs: the router's default level, against
            // `debug` (a line per event and per attempt) and `warn`.
            for log in ["", "debug", "warn,wasmhook::server=info"] {
                println!(
                    "log level {}:",
                    if log.is_empty() { "default (info)" } else { log }
                );
                end_to_end(fsync_redact("", log), &body, E2E_EVENTS, raw).await;
            }
        }
        if run("controls") {
            // The cost of delivery controls configured but not binding:
            // a rate limit far above what the router can do, and ordering
            // by a key that differs for every event (its send time, µs).
            // The circuit breaker is on in every run (the default).
            for target_extra in [
                "",
                "rate_limit = \"100000/s\"",
                "ordering = { key = { json_pointer = \"/sent_us\" } }",
                "rate_limit = \"100000/s\"\nordering = { key = { json_pointer = \"/sent_us\" } }",
            ] {
                println!(
                    "target {}:",
                    if target_extra.is_empty() {
                        "without controls".to_string()
                    } else {
                        target_extra.replace('\n', "; ")
                    }
                );
                end_to_end(fsync_redact(target_extra, ""), &body, E2E_EVENTS, raw).await;
            }
        }
        if run("telemetry") {
            // Spans exported over OTLP/HTTP to a sink of their own (it
            // answers 200 to anything), against the same run without.
            let collector = Sink::start();
            let on = format!(
                "[telemetry]\notlp_endpoint = \"{}\"\n\n",
                collector.url("otlp")
            );
            for (label, top_extra) in [("off", ""), ("on", on.as_str())] {
                println!("telemetry {label}:");
                let s = Scenario {
                    top_extra,
                    ..fsync_redact("", "")
                };
                end_to_end(s, &body, E2E_EVENTS, raw).await;
            }
            println!("span exports received: {}", collector.received());
        }
        if run("rate") {
            fixed_rate(5_000, 10, &body).await;
        }
        if run("flat") {
            flat(200_000, &body).await;
        }
        if run("backlog") {
            backlog(100_000).await;
        }
    });
}
