//! Dev tasks, one entry point: `cargo xtask <task>`.
//!
//! - `build-plugins`: build every plugin for wasm32-wasip2; copy the examples to
//!   `plugins/NAME.wasm` (where the sample config looks) and all of them,
//!   test plugins included, to `target/plugins/NAME.wasm` (where tests look).
//! - `run [ARGS…]`: build-plugins, build, then `wasmhook serve --config wasmhook.toml`.
//! - `test [ARGS…]`: build-plugins, then `cargo test --release --workspace`.
//!
//! `run` and `test` share one build: `run` builds with the very command
//! `test` uses (`cargo test --release --workspace --no-run`), then starts the
//! binary it made. `cargo run -p wasmhook` would resolve features for the
//! host crate alone, unlike a workspace test build, and so compile wasmtime
//! a second time (about 5 minutes on 2 cores).
//! - `bench`: build-plugins, then the benchmarks (plugin call, throughput, reload).

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

/// Example plugins: shipped in `plugins/`.
const EXAMPLES: &[&str] = &[
    "filter-event-type",
    "redact",
    "github-to-slack",
    "split-batch",
];
/// Test-only plugins: hostile and helper plugins under `tests/plugins/`.
const TEST_PLUGINS: &[&str] = &[
    "hostile-loop",
    "hostile-chatty",
    "hostile-sleep",
    "hostile-panic",
    "hostile-oom",
    "hostile-recursion",
    "hostile-output",
    "hostile-escape",
    "wrong-world",
    "tag-route",
    "clock-and-dice",
    "versioned-v1",
    "versioned-v2",
];
const WASM_TARGET: &str = "wasm32-wasip2";
/// The one build of the router: `test` runs it, `run` builds with it.
const TEST_BUILD: &[&str] = &["test", "--release", "--workspace"];

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (task, rest) = match args.split_first() {
        Some((t, rest)) => (t.as_str(), rest),
        None => ("help", &[][..]),
    };
    let result = match task {
        "build-plugins" => build_plugins(),
        "run" => build_plugins()
            .and_then(|()| cargo(&[TEST_BUILD, &["--no-run"]].concat()))
            .and_then(|()| serve(rest)),
        "test" => build_plugins().and_then(|()| {
            let mut args = TEST_BUILD.to_vec();
            args.extend(rest.iter().map(String::as_str));
            cargo(&args)
        }),
        "bench" => build_plugins()
            .and_then(|()| cargo(&["bench", "-p", "wasmhook", "--bench", "plugin_call"]))
            .and_then(|()| cargo(&["bench", "-p", "wasmhook-e2e", "--bench", "throughput"]))
            .and_then(|()| cargo(&["bench", "-p", "wasmhook-e2e", "--bench", "reload"])),
        _ => {
            eprintln!("usage: cargo xtask <build-plugins | run [ARGS…] | test [ARGS…] | bench>");
            return ExitCode::from(2);
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Where cargo builds: `CARGO_TARGET_DIR` if set, else `target/`.
fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => root().join(dir),
        None => root().join("target"),
    }
}

/// Run the router built by `cargo test --release --workspace --no-run`.
fn serve(rest: &[String]) -> Result<(), String> {
    let binary = target_dir().join("release").join("wasmhook");
    let status = Command::new(&binary)
        .args(["serve", "--config", "wasmhook.toml"])
        .args(rest)
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run {}: {e}", binary.display()))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("wasmhook exited with {status}"))
    }
}

fn cargo(args: &[&str]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .current_dir(root())
        .status()
        .map_err(|e| format!("cannot run {cargo}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo {}` failed", args.join(" ")))
    }
}

fn ensure_wasm_target() -> Result<(), String> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == WASM_TARGET)
        })
        .unwrap_or(true); // no rustup: assume the toolchain has it, cargo will say if not
    if installed {
        return Ok(());
    }
    eprintln!("xtask: adding the {WASM_TARGET} target (rustup target add {WASM_TARGET})");
    let ok = Command::new("rustup")
        .args(["target", "add", WASM_TARGET])
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(format!("`rustup target add {WASM_TARGET}` failed"))
    }
}

fn build_plugins() -> Result<(), String> {
    ensure_wasm_target()?;
    let mut args = vec!["build", "--profile", "plugin", "--target", WASM_TARGET];
    for p in EXAMPLES.iter().chain(TEST_PLUGINS) {
        args.extend(["-p", p]);
    }
    cargo(&args)?;
    let root = root();
    let built = target_dir().join(WASM_TARGET).join("plugin");
    let for_tests = target_dir().join("plugins");
    std::fs::create_dir_all(&for_tests)
        .map_err(|e| format!("cannot create {}: {e}", for_tests.display()))?;
    for name in EXAMPLES.iter().chain(TEST_PLUGINS) {
        let from = built.join(format!("{}.wasm", name.replace('-', "_")));
        let mut dests = vec![for_tests.join(format!("{name}.wasm"))];
        if EXAMPLES.contains(name) {
            dests.push(root.join("plugins").join(format!("{name}.wasm")));
        }
        for to in dests {
            // Write then rename, so a running router never sees a partial file.
            let tmp = to.with_extension("wasm.tmp");
            std::fs::copy(&from, &tmp)
                .map_err(|e| format!("cannot copy {}: {e}", from.display()))?;
            std::fs::rename(&tmp, &to)
                .map_err(|e| format!("cannot move into {}: {e}", to.display()))?;
        }
    }
    eprintln!("xtask: plugins built into plugins/ and target/plugins/");
    Ok(())
}
