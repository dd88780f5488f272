//! Plugins made the way an author makes them: `wasmhook plugin new` in a
//! folder with no wasmhook checkout around it, the template's own tools,
//! then `wasmhook plugin build`.
//!
//! Each language's project is scaffolded once per test run (npm install and
//! the Rust dependencies are the slow part) and its variants are built one
//! after another in it; the `.wasm` of each is kept, so tests share them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Mutex, OnceLock};

use crate::router::{binary, target_dir};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    Rust,
    Js,
    Python,
}

impl Lang {
    pub const ALL: [Lang; 3] = [Lang::Rust, Lang::Js, Lang::Python];

    fn flag(self) -> &'static str {
        match self {
            Lang::Rust => "rust",
            Lang::Js => "js",
            Lang::Python => "python",
        }
    }

    /// The file a plugin author edits, in the scaffolded project.
    fn source(self) -> &'static str {
        match self {
            Lang::Rust => "src/lib.rs",
            Lang::Js => "src/plugin.js",
            Lang::Python => "plugin.py",
        }
    }

    /// The test variant: a threshold filter on `/n` that tags what it keeps
    /// with `x-plugin-version: VERSION`.
    fn threshold(self) -> &'static str {
        match self {
            Lang::Rust => include_str!("../template-variants/threshold.rs"),
            Lang::Js => include_str!("../template-variants/threshold.js"),
            Lang::Python => include_str!("../template-variants/threshold.py"),
        }
    }

    /// The plugin's name: the project's, and the `.wasm` stem it is served as.
    pub fn plugin_name(self) -> &'static str {
        match self {
            Lang::Rust => "tpl-rust",
            Lang::Js => "tpl-js",
            Lang::Python => "tpl-python",
        }
    }
}

/// A scaffolded project of one language.
pub struct Project {
    pub lang: Lang,
    pub dir: PathBuf,
    /// Built variants by name; the lock also keeps builds one at a time.
    built: Mutex<HashMap<String, PathBuf>>,
}

/// Where template projects live during this run, and the Rust builds' target
/// folder, kept across runs so dependencies compile once.
fn work_dir() -> PathBuf {
    target_dir().join("template-plugins")
}

/// The project for `lang`, scaffolded on first use.
pub fn project(lang: Lang) -> &'static Project {
    static PROJECTS: OnceLock<Mutex<HashMap<Lang, &'static Project>>> = OnceLock::new();
    let projects = PROJECTS.get_or_init(|| {
        // Earlier runs' projects (node_modules is 340 MB a time) go.
        let mine = format!("{}-", std::process::id());
        if let Ok(entries) = std::fs::read_dir(work_dir().join("runs")) {
            for entry in entries.flatten() {
                if !entry.file_name().to_string_lossy().starts_with(&mine) {
                    let path = entry.path();
                    let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
                }
            }
        }
        Mutex::default()
    });
    // Scaffolding holds the lock: two tests asking for one language wait
    // for the same scaffold rather than make two.
    let mut map = projects.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(p) = map.get(&lang) {
        return p;
    }
    let p: &'static Project = Box::leak(Box::new(scaffold(lang)));
    map.insert(lang, p);
    p
}

fn scaffold(lang: Lang) -> Project {
    let runs = work_dir().join("runs");
    let dir = runs.join(format!("{}-{}", std::process::id(), lang.flag()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&runs).unwrap();
    let out = wasmhook(&runs)
        .args([
            "plugin",
            "new",
            lang.plugin_name(),
            "--lang",
            lang.flag(),
            "--dir",
        ])
        .arg(&dir)
        .output()
        .unwrap();
    check(&out, "wasmhook plugin new");
    Project {
        lang,
        dir,
        built: Mutex::default(),
    }
}

/// The `wasmhook` binary, run in `dir`, with the environment the template
/// tools need: Rust builds share one target folder across runs.
pub fn wasmhook(dir: &Path) -> Command {
    let mut cmd = Command::new(binary());
    cmd.current_dir(dir)
        .env("CARGO_TARGET_DIR", work_dir().join("cargo-target"))
        .env("PATH", tools_path())
        .env("RUST_LOG", "warn");
    cmd
}

/// `program` with the PATH of [`tools_path`].
pub fn tools_command(program: &str) -> Command {
    let mut cmd = Command::new(program);
    cmd.env("PATH", tools_path());
    cmd
}

/// The PATH with the plugin tools `cargo xtask test` installs
/// (componentize-py and pytest, in `target/plugin-tools/venv`) first.
fn tools_path() -> std::ffi::OsString {
    let venv_bin = target_dir().join("plugin-tools/venv/bin");
    let mut paths = vec![venv_bin];
    paths.extend(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    ));
    std::env::join_paths(paths).unwrap()
}

/// Panic with the command's output unless it succeeded.
pub fn check(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}):\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Project {
    /// The plugin as scaffolded: a no-op that keeps every event.
    pub fn noop(&self) -> PathBuf {
        self.build("noop", None)
    }

    /// The threshold variant, tagging what it keeps with `version`.
    pub fn threshold(&self, version: &str) -> PathBuf {
        let source = self.lang.threshold().replace("VERSION", version);
        self.build(&format!("threshold-{version}"), Some(source))
    }

    /// Build the threshold variant tagged `version` and deploy it into a
    /// router's plugins folder with `wasmhook plugin build --deploy`, as an
    /// author hot-deploys. Returns the deployed path (the last line).
    pub fn deploy_threshold(&self, version: &str, plugins: &Path) -> PathBuf {
        let _one_at_a_time = self.built.lock().unwrap_or_else(|e| e.into_inner());
        self.keep_scaffolded_source();
        let source = self.lang.threshold().replace("VERSION", version);
        std::fs::write(self.dir.join(self.lang.source()), source).unwrap();
        let out = wasmhook(&self.dir)
            .args(["plugin", "build", "--deploy"])
            .arg(plugins)
            .output()
            .unwrap();
        check(&out, "wasmhook plugin build --deploy");
        PathBuf::from(String::from_utf8_lossy(&out.stdout).lines().last().unwrap())
    }

    /// Run `f` in the project folder while no build runs there.
    pub fn with_project<T>(&self, f: impl FnOnce(&Path) -> T) -> T {
        let _one_at_a_time = self.built.lock().unwrap_or_else(|e| e.into_inner());
        self.restore_scaffolded_source();
        f(&self.dir)
    }

    /// Write `source` (or the template's own, kept from the scaffold) and
    /// run `wasmhook plugin build`; returns a copy of the `.wasm` it printed.
    fn build(&self, variant: &str, source: Option<String>) -> PathBuf {
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(path) = built.get(variant) {
            return path.clone();
        }
        match source {
            Some(text) => {
                self.keep_scaffolded_source();
                std::fs::write(self.dir.join(self.lang.source()), text).unwrap();
            }
            None => self.restore_scaffolded_source(),
        }
        let out = wasmhook(&self.dir)
            .args(["plugin", "build"])
            .output()
            .unwrap();
        check(
            &out,
            &format!("wasmhook plugin build ({:?} {variant})", self.lang),
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        let printed = PathBuf::from(stdout.lines().last().expect("build prints the .wasm path"));
        assert!(printed.is_file(), "the last line is the .wasm: {stdout}");
        let keep = self.dir.parent().unwrap().join(format!(
            "{}-{}-{variant}.wasm",
            std::process::id(),
            self.lang.flag()
        ));
        std::fs::copy(&printed, &keep).unwrap();
        built.insert(variant.to_string(), keep.clone());
        keep
    }

    /// The author's file as `plugin new` wrote it, kept outside the project
    /// before a variant overwrites it.
    fn scaffolded_copy(&self) -> PathBuf {
        self.dir
            .with_extension(format!("{}.scaffolded", self.lang.flag()))
    }

    fn keep_scaffolded_source(&self) {
        let copy = self.scaffolded_copy();
        if !copy.exists() {
            std::fs::copy(self.dir.join(self.lang.source()), copy).unwrap();
        }
    }

    fn restore_scaffolded_source(&self) {
        let copy = self.scaffolded_copy();
        if copy.exists() {
            std::fs::copy(copy, self.dir.join(self.lang.source())).unwrap();
        }
    }

    /// Run the template's own native tests (`cargo test`, `npm test`,
    /// `pytest`) on the plugin as scaffolded.
    pub fn run_native_tests(&self) -> Output {
        let _one_at_a_time = self.built.lock().unwrap_or_else(|e| e.into_inner());
        self.restore_scaffolded_source();
        let mut cmd = match self.lang {
            Lang::Rust => {
                let mut c = Command::new("cargo");
                c.args(["test", "--quiet"]);
                c
            }
            Lang::Js => {
                if !self.dir.join("node_modules").exists() {
                    let out = Command::new("npm")
                        .arg("install")
                        .current_dir(&self.dir)
                        .output()
                        .unwrap();
                    check(&out, "npm install");
                }
                let mut c = Command::new("npm");
                c.arg("test");
                c
            }
            Lang::Python => {
                let mut c = Command::new("python3");
                c.args(["-m", "pytest", "-q", "-p", "no:cacheprovider"]);
                c
            }
        };
        cmd.current_dir(&self.dir)
            .env("CARGO_TARGET_DIR", work_dir().join("cargo-target"))
            .env("PATH", tools_path())
            .output()
            .unwrap()
    }
}
