//! `wasmhook plugin build [DIR] [--deploy PLUGINS_DIR]`: build a plugin
//! project of any language into a `.wasm`, like `spin build`.
//!
//! The tools' own output goes to stderr; stdout is one line, the path of
//! the `.wasm`, so `wasmhook plugin run $(wasmhook plugin build) …` works.
//! A missing tool is named with the command that installs it.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};

use anyhow::{Context as _, bail};
use clap::Args;

use super::Lang;

/// The componentize-py the Python template pins.
pub(super) const COMPONENTIZE_PY: &str = "componentize-py==0.25.1";
const WASM_TARGET: &str = "wasm32-wasip2";

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// The plugin project (default: the current folder).
    dir: Option<PathBuf>,
    /// Also copy the .wasm into this plugins folder, atomically (a temp
    /// file, then a rename), as NAME.wasm: a running router hot-loads it.
    #[arg(long, value_name = "PLUGINS_DIR")]
    deploy: Option<PathBuf>,
}

/// A project found in a folder: its language and plugin name.
#[derive(Debug, PartialEq, Eq)]
struct Project {
    lang: Lang,
    name: String,
}

#[allow(clippy::print_stdout)]
pub fn build(args: BuildArgs) -> anyhow::Result<ExitCode> {
    // A typo in --deploy is found before a build of many seconds.
    if let Some(plugins) = &args.deploy {
        check_plugins_dir(plugins)?;
    }
    let start = args.dir.unwrap_or_else(|| PathBuf::from("."));
    let (dir, project) = find_project(&start)?;
    eprintln!(
        "building {} plugin {} in {}",
        project.lang.label(),
        project.name,
        dir.display()
    );
    let wasm = match project.lang {
        Lang::Rust => build_rust(&dir)?,
        Lang::Js => build_js(&dir, &project.name)?,
        Lang::Python => build_python(&dir, &project.name)?,
    };
    let wasm = wasm.canonicalize().unwrap_or(wasm);
    let printed = match &args.deploy {
        Some(plugins) => deploy(&wasm, plugins, &project.name)?,
        None => wasm,
    };
    super::print_stdout(&printed.display().to_string())?;
    Ok(ExitCode::SUCCESS)
}

/// The project `start` is in, and what it is: the nearest folder, `start`
/// or one of its parents, with a manifest, as cargo and npm look.
fn find_project(start: &Path) -> anyhow::Result<(PathBuf, Project)> {
    if !start.is_dir() {
        bail!("{} is not a folder", start.display());
    }
    let absolute = start.canonicalize()?;
    for dir in absolute.ancestors() {
        if let Some(project) = detect(dir)? {
            let dir = if dir == absolute { start } else { dir };
            return Ok((dir.to_path_buf(), project));
        }
    }
    bail!(
        "{} holds no plugin project (no Cargo.toml, package.json or pyproject.toml here or above); \
         make one with `wasmhook plugin new NAME --lang rust|js|python`",
        start.display()
    )
}

/// What kind of project `dir` holds, by its manifest; `None` for none.
fn detect(dir: &Path) -> anyhow::Result<Option<Project>> {
    let read = |file: &str| std::fs::read_to_string(dir.join(file));
    let (lang, name) = if let Ok(text) = read("Cargo.toml") {
        (Lang::Rust, toml_name(&text, "Cargo.toml", "package")?)
    } else if let Ok(text) = read("package.json") {
        let manifest: serde_json::Value =
            serde_json::from_str(&text).context("package.json is not valid JSON")?;
        let name = manifest["name"]
            .as_str()
            .context("package.json has no \"name\"")?;
        // A scoped npm name (@acme/x) is served as its last part.
        (
            Lang::Js,
            name.rsplit('/').next().unwrap_or(name).to_string(),
        )
    } else if let Ok(text) = read("pyproject.toml") {
        (Lang::Python, toml_name(&text, "pyproject.toml", "project")?)
    } else {
        return Ok(None);
    };
    Ok(Some(Project { lang, name }))
}

/// `[table] name = "…"` from a TOML manifest.
fn toml_name(text: &str, file: &str, table: &str) -> anyhow::Result<String> {
    let manifest: toml::Table =
        toml::from_str(text).with_context(|| format!("{file} is not valid TOML"))?;
    manifest
        .get(table)
        .and_then(|p| p.get("name"))
        .and_then(|n| n.as_str())
        .map(String::from)
        .with_context(|| format!("{file} has no [{table}] name"))
}

fn build_rust(dir: &Path) -> anyhow::Result<PathBuf> {
    if !tool_runs("cargo", &["--version"]) {
        bail!(
            "cargo is not installed: install Rust with rustup, then `rustup target add {WASM_TARGET}`"
        );
    }
    if rustup_lacks_target() {
        bail!("the {WASM_TARGET} target is not installed: run `rustup target add {WASM_TARGET}`");
    }
    // JSON messages on stdout name the artifact wherever the target dir is.
    let output = Command::new("cargo")
        .args(["build", "--release", "--target", WASM_TARGET])
        .args(["--message-format", "json-render-diagnostics"])
        .current_dir(dir)
        .stderr(Stdio::inherit())
        .output()
        .context("cannot run cargo")?;
    if !output.status.success() {
        bail!("cargo build failed (its errors are above)");
    }
    let manifest = dir.join("Cargo.toml").canonicalize()?;
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| m["manifest_path"].as_str().map(Path::new) == Some(manifest.as_path()))
        .filter(|m| {
            m["target"]["kind"]
                .as_array()
                .is_some_and(|k| k.iter().any(|k| k == "cdylib"))
        })
        .flat_map(|m| {
            m["filenames"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .filter_map(|f| f.as_str().map(PathBuf::from))
        .find(|f| f.extension().is_some_and(|e| e == "wasm"))
        .context(
            "cargo built no .wasm: the crate needs `[lib] crate-type = [\"cdylib\", \"rlib\"]`, as the template has",
        )
}

fn build_js(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    if !tool_runs("node", &["--version"]) || !tool_runs("npm", &["--version"]) {
        bail!(
            "Node.js is not installed: install Node.js 18 or later (it brings npm), then run this again"
        );
    }
    if !dir.join("node_modules/.bin/jco").exists() {
        eprintln!("installing the build tools first (npm install)");
        run(
            Command::new("npm").arg("install").current_dir(dir),
            "npm install",
        )?;
    }
    run(
        Command::new("npm").args(["run", "build"]).current_dir(dir),
        "npm run build",
    )?;
    built(dir, name)
}

fn build_python(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let tool = find_componentize_py(dir).with_context(|| {
        format!(
            "componentize-py is not installed: `python3 -m pip install {COMPONENTIZE_PY}` \
             (the project's requirements-dev.txt pins it; a venv at .venv is found too)"
        )
    })?;
    std::fs::create_dir_all(dir.join("dist"))?;
    let out = format!("dist/{name}.wasm");
    let mut command = Command::new(&tool);
    command
        .args([
            "-d",
            "wit",
            "-w",
            "plugin",
            "componentize",
            "app",
            "-p",
            ".",
        ])
        .args(["-o", &out])
        // componentize-py is Rust: a RUST_BACKTRACE meant for the author's
        // own Rust buries the Python error under 30 frames of its internals.
        .env_remove("RUST_BACKTRACE")
        .current_dir(dir);
    // componentize-py finds the packages a plugin imports through
    // VIRTUAL_ENV: set it for the project's own venv, activated or not.
    let venv = dir.join(".venv");
    if std::env::var_os("VIRTUAL_ENV").is_none() && tool.starts_with(&venv) {
        command.env("VIRTUAL_ENV", venv.canonicalize().unwrap_or(venv));
    }
    run(&mut command, "componentize-py")?;
    built(dir, name)
}

/// `dist/NAME.wasm`, which the JS and Python builds make.
fn built(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let wasm = dir.join("dist").join(format!("{name}.wasm"));
    if !wasm.is_file() {
        bail!("the build finished but made no {}", wasm.display());
    }
    Ok(wasm)
}

/// Run a build step with its output on stderr.
fn run(command: &mut Command, what: &str) -> anyhow::Result<()> {
    let status = command
        .stdout(std::io::stderr())
        .stderr(Stdio::inherit())
        .status()
        .with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed (its errors are above)");
    }
    Ok(())
}

fn tool_runs(tool: &str, args: &[&str]) -> bool {
    Command::new(tool)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// True only when rustup is there and says the target is missing: without
/// rustup, cargo itself reports what it lacks.
fn rustup_lacks_target() -> bool {
    Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .is_ok_and(|o| {
            o.status.success()
                && !String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == WASM_TARGET)
        })
}

/// componentize-py on the PATH, in the active venv, or in DIR/.venv.
fn find_componentize_py(dir: &Path) -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("componentize-py")];
    if let Some(venv) = std::env::var_os("VIRTUAL_ENV") {
        candidates.push(PathBuf::from(venv).join("bin/componentize-py"));
    }
    candidates.push(dir.join(".venv/bin/componentize-py"));
    candidates.into_iter().find(|c| {
        Command::new(c)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Copy `wasm` into `plugins` as `NAME.wasm` by a rename, so a router
/// watching the folder never sees half a file.
fn check_plugins_dir(plugins: &Path) -> anyhow::Result<()> {
    if plugins.is_dir() {
        return Ok(());
    }
    let what = if plugins.exists() {
        "is not a folder"
    } else {
        "no such folder"
    };
    bail!(
        "--deploy {}: {what} (give the router's plugins.dir)",
        plugins.display()
    )
}

fn deploy(wasm: &Path, plugins: &Path, name: &str) -> anyhow::Result<PathBuf> {
    check_plugins_dir(plugins)?;
    // The router serves `NAME.wasm` as NAME: a name that is a path, or a
    // hidden file, would be put elsewhere or never loaded.
    if name.is_empty() || name.starts_with('.') || name.contains(['/', '\\']) {
        bail!(
            "the project's name {name:?} cannot be a plugin file name: use letters, digits and '-'"
        );
    }
    let dest = plugins.join(format!("{name}.wasm"));
    let tmp = plugins.join(format!(".{name}.wasm.{}.tmp", std::process::id()));
    std::fs::copy(wasm, &tmp).with_context(|| format!("cannot write {}", tmp.display()))?;
    if let Err(e) = std::fs::rename(&tmp, &dest) {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot move the plugin into {}", dest.display()));
    }
    eprintln!("deployed {name} to {}", dest.display());
    Ok(dest.canonicalize().unwrap_or(dest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn project(files: &[(&str, &str)]) -> tempfile_dir::Dir {
        let dir = tempfile_dir::Dir::new();
        for (name, text) in files {
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        dir
    }

    /// A temp folder removed on drop, without a dev-dependency.
    mod tempfile_dir {
        pub struct Dir(std::path::PathBuf);
        impl Dir {
            pub fn new() -> Self {
                use std::sync::atomic::{AtomicUsize, Ordering};
                static N: AtomicUsize = AtomicUsize::new(0);
                let p = std::env::temp_dir().join(format!(
                    "wasmhook-build-{}-{}",
                    std::process::id(),
                    N.fetch_add(1, Ordering::Relaxed)
                ));
                std::fs::create_dir_all(&p).unwrap();
                Dir(p)
            }
            pub fn path(&self) -> &std::path::Path {
                &self.0
            }
        }
        impl Drop for Dir {
            fn drop(&mut self) {
                let _ = std::fs::remove_dir_all(&self.0);
            }
        }
    }

    #[test]
    fn the_manifest_names_the_language_and_the_plugin() {
        let rust = project(&[("Cargo.toml", "[package]\nname = \"my-filter\"\n")]);
        assert_eq!(
            detect(rust.path()).unwrap().unwrap(),
            Project {
                lang: Lang::Rust,
                name: "my-filter".into()
            }
        );
        let js = project(&[("package.json", r#"{"name": "@acme/tagger"}"#)]);
        assert_eq!(detect(js.path()).unwrap().unwrap().name, "tagger");
        let py = project(&[("pyproject.toml", "[project]\nname = \"scorer\"\n")]);
        assert_eq!(detect(py.path()).unwrap().unwrap().lang, Lang::Python);
        let empty = project(&[]);
        assert!(detect(empty.path()).unwrap().is_none());
        let err = find_project(empty.path()).unwrap_err().to_string();
        assert!(err.contains("wasmhook plugin new"), "{err}");
        // From a folder inside a project, the project is found above.
        std::fs::create_dir_all(rust.path().join("src/deep")).unwrap();
        let (found, project) = find_project(&rust.path().join("src/deep")).unwrap();
        assert_eq!(found, rust.path().canonicalize().unwrap());
        assert_eq!(project.name, "my-filter");
    }

    #[test]
    fn deploy_renames_into_place_and_refuses_a_missing_folder() {
        let dir = project(&[("x.wasm", "bytes")]);
        let plugins = dir.path().join("plugins");
        assert!(deploy(&dir.path().join("x.wasm"), &plugins, "x").is_err());
        std::fs::create_dir(&plugins).unwrap();
        assert!(deploy(&dir.path().join("x.wasm"), &plugins, "../x").is_err());
        let dest = deploy(&dir.path().join("x.wasm"), &plugins, "x").unwrap();
        assert_eq!(std::fs::read(dest).unwrap(), b"bytes");
        let left: Vec<_> = std::fs::read_dir(&plugins).unwrap().collect();
        assert_eq!(left.len(), 1, "no temp file left behind");
    }
}
