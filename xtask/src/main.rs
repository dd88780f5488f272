//! Dev tasks, one entry point: `cargo xtask <task>`.
//!
//! - `build-plugins`: build every plugin for wasm32-wasip2; copy the examples to
//!   `plugins/NAME.wasm` (where the sample config looks) and all of them,
//!   test plugins included, to `target/plugins/NAME.wasm` (where tests look).
//! - `run [ARGS…]`: build-plugins, build, then `wasmhook serve --config wasmhook.toml`.
//! - `test [ARGS…]`: build-plugins, the plugin tools (below), then
//!   `cargo test --release --workspace`; then, without ARGS, the end-to-end
//!   suite again with every router on PostgreSQL (skipped, saying so, where
//!   PostgreSQL is not installed).
//!
//! `run` and `test` share one build: `run` builds with the very command
//! `test` uses (`cargo test --release --workspace --no-run`), then starts the
//! binary it made. `cargo run -p wasmhook` would resolve features for the
//! host crate alone, unlike a workspace test build, and so compile wasmtime
//! a second time (about 5 minutes on 2 cores).
//! - `bench [NAME [-- ARGS…]]`: build-plugins, the template plugins, then the
//!   benchmarks (plugin_call, languages, admin_pages, throughput, reload), or
//!   just NAME, with ARGS passed to it (`bench throughput -- e2e rate`).
//! - `screenshots`: the dashboard's browser test, saving a screenshot of
//!   each page into `docs/screenshots/` (for the README).
//!
//! The tests build JavaScript and Python plugins from the templates, as an
//! author would, so `test` and `bench` first make sure of their tools:
//! Node.js must be installed (it is named if not), and componentize-py and
//! pytest, at the versions the Python template pins, are installed into a
//! venv in `target/plugin-tools/venv`, which the tests find there.

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
    "call-counter",
    "clock-and-dice",
    "versioned-v1",
    "versioned-v2",
];
const WASM_TARGET: &str = "wasm32-wasip2";
/// Every benchmark, as (package, bench).
const BENCHES: &[(&str, &str)] = &[
    ("wasmhook", "plugin_call"),
    ("wasmhook", "languages"),
    ("wasmhook", "admin_pages"),
    ("wasmhook-e2e", "throughput"),
    ("wasmhook-e2e", "reload"),
];
/// The Python template's pinned tools, which the tests build with.
const PYTHON_TOOLS: &str = "host/templates/python/requirements-dev.txt";
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
        "test" => build_plugins()
            .and_then(|()| plugin_tools())
            .and_then(|()| {
                let mut args = TEST_BUILD.to_vec();
                args.extend(rest.iter().map(String::as_str));
                cargo(&args)
            })
            .and_then(|()| {
                if rest.is_empty() {
                    e2e_on_postgres()
                } else {
                    Ok(())
                }
            }),
        "screenshots" => build_plugins().and_then(|()| {
            let dir = root().join("docs/screenshots");
            cargo_env(
                &[
                    TEST_BUILD,
                    &["--test", "it", "--", "dashboard::the_dashboard_finds"],
                ]
                .concat(),
                &[
                    (
                        "WASMHOOK_SCREENSHOTS",
                        dir.to_str().unwrap_or("docs/screenshots"),
                    ),
                    ("WASMHOOK_REQUIRE_BROWSER", "1"),
                ],
            )
        }),
        "bench" => build_plugins()
            .and_then(|()| plugin_tools())
            .and_then(|()| template_plugins())
            .and_then(|()| {
                // `cargo xtask bench languages` runs just that one, and
                // `cargo xtask bench throughput -- e2e` passes `e2e` to it.
                let only = rest.first().map(String::as_str);
                let passed: Vec<&str> = rest
                    .iter()
                    .skip(1)
                    .map(String::as_str)
                    .filter(|a| *a != "--")
                    .collect();
                for (package, bench) in BENCHES {
                    if only.is_none_or(|o| o == *bench) {
                        let mut args = vec!["bench", "-p", package, "--bench", bench, "--"];
                        args.extend(&passed);
                        cargo(&args)?;
                    }
                }
                Ok(())
            }),
        _ => {
            eprintln!(
                "usage: cargo xtask <build-plugins | run [ARGS…] | test [ARGS…] | bench [NAME [-- ARGS…]] | screenshots>"
            );
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
    cargo_env(args, &[])
}

fn cargo_env(args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(&cargo)
        .args(args)
        .envs(env.iter().copied())
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

/// Node.js for the JS template, and a venv with the Python template's
/// tools. Installed once; a venv with the pinned versions is kept.
fn plugin_tools() -> Result<(), String> {
    let runs = |tool: &str| {
        Command::new(tool)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    };
    if !runs("node") || !runs("npm") {
        return Err(
            "the tests build a JavaScript plugin from its template and need Node.js 18 or later \
             with npm: install them (e.g. `apt-get install nodejs npm`)"
                .into(),
        );
    }
    let venv = target_dir().join("plugin-tools").join("venv");
    let stamp = venv.join("wasmhook-tools.txt");
    let requirements = root().join(PYTHON_TOOLS);
    let want = std::fs::read_to_string(&requirements)
        .map_err(|e| format!("cannot read {}: {e}", requirements.display()))?;
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == want) {
        return Ok(());
    }
    eprintln!("xtask: installing {PYTHON_TOOLS} into {}", venv.display());
    let _ = std::fs::remove_dir_all(&venv);
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err(
            "`python3 -m venv` failed: the tests build a Python plugin and need Python 3.10+ \
             with venv (e.g. `apt-get install python3-venv`)"
                .into(),
        );
    }
    let ok = Command::new(venv.join("bin").join("pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        return Err(format!("`pip install -r {PYTHON_TOOLS}` failed"));
    }
    std::fs::write(&stamp, want).map_err(|e| format!("cannot write {}: {e}", stamp.display()))
}

/// The threshold plugin of `tests/template-variants/`, built from each
/// language's template with the router's own `plugin new` and `plugin
/// build`, into `target/plugins/tpl-LANG.wasm` for the benchmarks.
fn template_plugins() -> Result<(), String> {
    cargo(&[TEST_BUILD, &["--no-run"]].concat())?;
    let bin = target_dir().join("release").join("wasmhook");
    let venv_bin = target_dir().join("plugin-tools/venv/bin");
    let path = std::env::join_paths(std::iter::once(venv_bin).chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .map_err(|e| e.to_string())?;
    for (lang, source, variant) in [
        ("rust", "src/lib.rs", "threshold.rs"),
        ("js", "src/plugin.js", "threshold.js"),
        ("python", "plugin.py", "threshold.py"),
    ] {
        let name = format!("tpl-{lang}");
        let dir = target_dir().join("template-plugins/bench").join(lang);
        let run = |args: &[&str]| {
            Command::new(&bin)
                .args(args)
                .env("PATH", &path)
                .env(
                    "CARGO_TARGET_DIR",
                    target_dir().join("template-plugins/cargo-target"),
                )
                .output()
                .map_err(|e| format!("cannot run {}: {e}", bin.display()))
        };
        if !dir.exists() {
            let out = run(&[
                "plugin",
                "new",
                &name,
                "--lang",
                lang,
                "--dir",
                &dir.to_string_lossy(),
            ])?;
            if !out.status.success() {
                return Err(format!(
                    "plugin new: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        let text = std::fs::read_to_string(root().join("tests/template-variants").join(variant))
            .map_err(|e| format!("cannot read {variant}: {e}"))?;
        std::fs::write(dir.join(source), text.replace("VERSION", "bench"))
            .map_err(|e| format!("cannot write {source}: {e}"))?;
        let plugins = target_dir().join("plugins");
        let out = run(&[
            "plugin",
            "build",
            &dir.to_string_lossy(),
            "--deploy",
            &plugins.to_string_lossy(),
        ])?;
        if !out.status.success() {
            return Err(format!(
                "plugin build ({lang}): {}",
                String::from_utf8_lossy(&out.stderr)
            ));
        }
    }
    eprintln!("xtask: template plugins built into target/plugins/tpl-*.wasm");
    Ok(())
}

/// The end-to-end suite again, every router on PostgreSQL (a throwaway
/// server the tests start). Skipped, saying so, without PostgreSQL here;
/// `WASMHOOK_REQUIRE_POSTGRES=1` (CI) makes that an error.
fn e2e_on_postgres() -> Result<(), String> {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain(
            std::fs::read_dir("/usr/lib/postgresql")
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path().join("bin")),
        )
        .any(|d| d.join("initdb").is_file() && d.join("postgres").is_file());
    if !found {
        if std::env::var("WASMHOOK_REQUIRE_POSTGRES").is_ok_and(|v| v == "1") {
            return Err("PostgreSQL is required (WASMHOOK_REQUIRE_POSTGRES=1), but initdb and postgres are not installed".into());
        }
        eprintln!(
            "xtask: skipped: the end-to-end suite on PostgreSQL (initdb and postgres not found)"
        );
        return Ok(());
    }
    eprintln!("xtask: the end-to-end suite again, on PostgreSQL");
    cargo_env(
        &[TEST_BUILD, &["--test", "it"]].concat(),
        &[("WASMHOOK_TEST_STORE", "postgres")],
    )
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
