//! A throwaway PostgreSQL server for tests, shared by a test process: `initdb`
//! and `postgres` in a temp folder, on a free loopback port, as the
//! `postgres` user when the tests run as root (PostgreSQL refuses root).
//! Each test takes a database of its own with [`database`].
//!
//! Without PostgreSQL on the machine, [`database`] returns `None` and says
//! so on stderr, so the test can skip; with `WASMHOOK_REQUIRE_POSTGRES=1`
//! (CI sets it) it panics instead, so a skip cannot pass unnoticed.
//!
//! The server dies with the test process: it runs under a small shell that
//! kills it when the test process's end of a pipe closes, whatever way the
//! process ends.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

pub struct Server {
    pub port: u16,
    _dir: tempfile::TempDir,
    child: Child,
    /// Closing this (on drop, or at process exit) stops the server.
    lifeline: Mutex<Option<ChildStdin>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        drop(self.lifeline.lock().map(|mut l| l.take()));
        let _ = self.child.wait();
    }
}

static SERVER: OnceLock<Option<Server>> = OnceLock::new();
static NEXT_DB: AtomicUsize = AtomicUsize::new(0);

/// The folder holding `initdb` and `postgres`: on the PATH, or where
/// Debian's packages put them.
fn bin_dir() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut dirs: Vec<PathBuf> = std::env::split_paths(&path).collect();
    if let Ok(found) = std::fs::read_dir("/usr/lib/postgresql") {
        let mut versions: Vec<PathBuf> = found.flatten().map(|e| e.path().join("bin")).collect();
        versions.sort();
        dirs.extend(versions.into_iter().rev());
    }
    dirs.into_iter()
        .find(|d| d.join("initdb").is_file() && d.join("postgres").is_file())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `cmd` as the user PostgreSQL runs as.
fn as_pg_user(program: &Path) -> Command {
    if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(program);
        c
    } else {
        Command::new(program)
    }
}

/// Start a server of one's own (dropping it stops it). `durable`: with
/// fsync and synchronous commits on, as in production (for benchmarks);
/// else without them, which tests need not pay for.
pub fn start(durable: bool) -> Result<Server, String> {
    let bin =
        bin_dir().ok_or("initdb and postgres are not on the PATH nor in /usr/lib/postgresql")?;
    let dir = tempfile::Builder::new()
        .prefix("wasmhook-pg-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let data = dir.path().join("data");
    if is_root() {
        // The postgres user must own the folder.
        let ok = Command::new("chown")
            .args(["postgres:postgres"])
            .arg(dir.path())
            .status()
            .map_err(|e| e.to_string())?
            .success();
        if !ok {
            return Err(format!("cannot chown {} to postgres", dir.path().display()));
        }
    }
    let out = as_pg_user(&bin.join("initdb"))
        .args(["-D"])
        .arg(&data)
        .args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8"])
        .output()
        .map_err(|e| format!("cannot run initdb: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "initdb failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| e.to_string())?
        .port();
    // The shell starts postgres, then waits for its stdin to close (the
    // test process ended) and stops it, and removes its folder: the shared
    // server lives in a static, which is never dropped, so its `TempDir`
    // never cleans up (each test process left 1 GiB behind in /tmp).
    let fast = if durable {
        ""
    } else {
        "-c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    };
    // The paths go in as arguments, never into the script's text: a
    // TMPDIR with a space or a glob character must not change what `rm`
    // removes.
    let script = format!(
        "\"$1\" -D \"$2\" -p {port} -k \"$3\" -h 127.0.0.1 {fast} \
         -c max_connections=400 -c shared_buffers=128MB & pid=$!; \
         cat >/dev/null; kill -INT $pid; wait $pid; rm -rf -- \"$3\"",
    );
    let mut child = as_pg_user(Path::new("/bin/sh"))
        .args(["-c", &script, "wasmhook-testpg"])
        .arg(bin.join("postgres"))
        .arg(&data)
        .arg(dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start postgres: {e}"))?;
    let stdin = child.stdin.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        // Drained to the end, so the server never blocks on a full pipe.
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut log = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => {
                let ready = line.contains("ready to accept connections");
                log.push_str(&line);
                log.push('\n');
                if ready {
                    break;
                }
            }
            Err(_) => return Err(format!("postgres did not start:\n{log}")),
        }
    }
    Ok(Server {
        port,
        _dir: dir,
        child,
        lifeline: Mutex::new(Some(stdin)),
    })
}

/// The shared server, started on first use; `None` (with a line saying so)
/// when this machine has no PostgreSQL and CI did not ask for it.
pub fn server() -> Option<&'static Server> {
    SERVER
        .get_or_init(|| match start(false) {
            Ok(s) => Some(s),
            Err(why) => {
                if std::env::var("WASMHOOK_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
                    panic!("PostgreSQL is required (WASMHOOK_REQUIRE_POSTGRES=1) but: {why}");
                }
                None
            }
        })
        .as_ref()
}

/// A new, empty database on the shared server, as a `postgres://` URL.
/// `None` when there is no PostgreSQL: the caller skips, and this prints
/// `skipped: TEST needs PostgreSQL (…)`.
pub fn database(test: &str) -> Option<String> {
    let Some(server) = server() else {
        eprintln!(
            "skipped: {test} needs PostgreSQL (initdb and postgres not found; set WASMHOOK_REQUIRE_POSTGRES=1 to fail instead)"
        );
        return None;
    };
    Some(server.database())
}

impl Server {
    /// A new, empty database on this server, as a `postgres://` URL.
    pub fn database(&self) -> String {
        let name = format!(
            "t{}_{}",
            std::process::id(),
            NEXT_DB.fetch_add(1, Ordering::Relaxed)
        );
        let admin = format!(
            "host=127.0.0.1 port={} user=postgres dbname=postgres",
            self.port
        );
        let create = format!("CREATE DATABASE {name}");
        // On a thread of its own: the caller may be inside a runtime already.
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let (client, conn) = tokio_postgres::connect(&admin, tokio_postgres::NoTls)
                    .await
                    .expect("connect to the test PostgreSQL");
                let conn = tokio::spawn(conn);
                client
                    .batch_execute(&create)
                    .await
                    .expect("create a test database");
                drop(client);
                let _ = conn.await;
            })
        })
        .join()
        .expect("creating the test database panicked");
        format!(
            "postgres://postgres@127.0.0.1:{}/{name}?sslmode=disable",
            self.port
        )
    }
}
