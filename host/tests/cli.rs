//! `wasmhook check`: the exit code and the message a user sees.

use std::path::Path;
use std::process::Command;

fn check(dir: &Path, toml: &str) -> (bool, String, String) {
    let path = dir.join("wasmhook.toml");
    std::fs::write(&path, toml).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wasmhook"))
        .args(["check", "--config"])
        .arg(&path)
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A folder with an empty `plugins/`, removed when the test ends.
fn temp_dir(name: &str) -> tempfile::TempDir {
    let dir = tempfile::Builder::new()
        .prefix(&format!("wasmhook-cli-{name}-"))
        .tempdir()
        .unwrap();
    std::fs::create_dir_all(dir.path().join("plugins")).unwrap();
    dir
}

const VALID: &str = r#"
[[sources]]
name = "s"

[[targets]]
name = "t"
url = "http://127.0.0.1:9/hook"

[[routes]]
name = "r"
source = "s"
targets = ["t"]
"#;

#[test]
fn a_valid_config_passes() {
    let dir = temp_dir("valid");
    let (ok, stdout, stderr) = check(dir.path(), VALID);
    assert!(ok, "{stderr}");
    assert!(
        stdout.starts_with("ok: 1 sources, 1 targets, 1 routes"),
        "{stdout}"
    );
}

#[test]
fn an_unknown_key_names_the_key_and_the_line() {
    let dir = temp_dir("unknown");
    let (ok, _, stderr) = check(
        dir.path(),
        &format!("{VALID}\n[plugins]\ntimeout_msec = 5\n"),
    );
    assert!(!ok);
    assert!(stderr.contains("wasmhook.toml:15"), "{stderr}");
    assert!(stderr.contains("unknown field `timeout_msec`"), "{stderr}");
}

#[test]
fn a_route_to_an_unknown_target_is_an_error_with_the_line() {
    let dir = temp_dir("target");
    let (ok, _, stderr) = check(
        dir.path(),
        &VALID.replace(r#"targets = ["t"]"#, r#"targets = ["nope"]"#),
    );
    assert!(!ok);
    assert!(
        stderr
            .contains(":12: routes[0].targets: no target is named \"nope\"; configured targets: t"),
        "{stderr}"
    );
}

#[test]
fn a_route_using_a_missing_plugin_fails_the_check() {
    let dir = temp_dir("plugin");
    let (ok, _, stderr) = check(
        dir.path(),
        &VALID.replace(r#"source = "s""#, "source = \"s\"\nplugins = [\"ghost\"]"),
    );
    assert!(!ok);
    assert!(
        stderr.contains(r#"route "r" uses plugin "ghost""#),
        "{stderr}"
    );
}

#[test]
fn a_broken_plugin_file_fails_the_check_with_the_reason() {
    let dir = temp_dir("broken");
    std::fs::write(dir.path().join("plugins/junk.wasm"), b"\0asm\x01\0\0\0").unwrap();
    let (ok, _, stderr) = check(dir.path(), VALID);
    assert!(!ok);
    assert!(stderr.contains("plugin junk"), "{stderr}");
    assert!(
        stderr.contains("core WebAssembly module, not a component"),
        "{stderr}"
    );
}

#[test]
fn a_missing_env_var_is_named() {
    let dir = temp_dir("env");
    let toml = VALID.replace(
        "url = \"http://127.0.0.1:9/hook\"",
        "url = \"http://127.0.0.1:9/hook\"\nsigning_secret = \"${WASMHOOK_TEST_UNSET_SECRET}\"",
    );
    let (ok, _, stderr) = check(dir.path(), &toml);
    assert!(!ok);
    assert!(
        stderr.contains("WASMHOOK_TEST_UNSET_SECRET is not set"),
        "{stderr}"
    );
    assert!(stderr.contains("wasmhook.toml:8"), "{stderr}");
}

#[test]
fn the_cluster_example_passes_check() {
    // examples/cluster.toml, as README's "Running several routers" runs it
    // (its plugins are the examples `cargo xtask build-plugins` builds).
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/cluster.toml");
    let out = Command::new(env!("CARGO_BIN_EXE_wasmhook"))
        .args(["check", "--config"])
        .arg(&path)
        .env("RUST_LOG", "error")
        .env("WASMHOOK_LISTEN", "127.0.0.1:8081")
        .env(
            "WASMHOOK_DATABASE_URL",
            "postgres://wasmhook:secret@127.0.0.1:5432/wasmhook?sslmode=disable",
        )
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
}
