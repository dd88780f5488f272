//! `wasmhook plugin new NAME [--lang rust|js|python]`: scaffold a plugin
//! project that builds anywhere.
//!
//! Every template makes the same plugin: it keeps every event unchanged,
//! with comments where to filter or transform, a sample event, a native
//! test, and the SDK and WIT this binary carries, vendored.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use clap::Args;

use super::Lang;
use super::templates::{self, File};

#[derive(Debug, Args)]
pub struct NewArgs {
    /// Plugin name: the project's name and the .wasm file stem the router
    /// serves it under. Lower-case letters, digits and '-'.
    name: String,
    /// The language to write it in.
    #[arg(long, value_enum, default_value = "rust")]
    lang: Lang,
    /// Folder to create the project in (default: ./NAME).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// The files of a new project in `lang`: its template, and the SDK and WIT
/// vendored where the template expects them.
fn project_files(lang: Lang) -> Vec<(String, &'static str)> {
    let under = |prefix: &str, files: &[File]| -> Vec<(String, &'static str)> {
        files
            .iter()
            .map(|(dest, text)| (format!("{prefix}{dest}"), *text))
            .collect()
    };
    let mut files = Vec::new();
    match lang {
        Lang::Rust => {
            files.extend(under("", templates::RUST));
            files.extend(under("vendor/wasmhook-sdk/", templates::RUST_SDK));
        }
        Lang::Js => {
            files.extend(under("", templates::JS));
            files.extend(under("wasmhook-sdk/", templates::JS_SDK));
            files.push(("wit/plugin.wit".into(), templates::WIT));
        }
        Lang::Python => {
            files.extend(under("", templates::PYTHON));
            files.extend(under("wasmhook/", templates::PYTHON_SDK));
            files.push(("wit/plugin.wit".into(), templates::WIT));
        }
    }
    files
}

#[allow(clippy::print_stdout)]
pub fn new(args: NewArgs) -> anyhow::Result<ExitCode> {
    let name = args.name.as_str();
    check_name(name)?;
    let dir = args.dir.unwrap_or_else(|| PathBuf::from(name));
    // An empty folder (`--dir .` in a fresh one) is as good as none.
    let empty = std::fs::read_dir(&dir).is_ok_and(|mut entries| entries.next().is_none());
    if dir.exists() && !empty {
        bail!(
            "{} already exists and is not empty; pick another name or --dir",
            dir.display()
        );
    }
    if let Err(e) = write_project(&dir, name, args.lang) {
        // Leave nothing half-made behind (an empty folder we were given
        // stays, emptied again).
        let _ = std::fs::remove_dir_all(&dir);
        if empty {
            let _ = std::fs::create_dir_all(&dir);
        }
        return Err(e);
    }
    println!(
        "created {} plugin {name} in {}\n\n  cd {}\n{}",
        args.lang.label(),
        dir.display(),
        dir.display(),
        next_steps(args.lang, name)
    );
    Ok(ExitCode::SUCCESS)
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.ends_with('-');
    if !valid {
        bail!(
            "{name:?} is not a plugin name: use lower-case letters, digits and '-', starting with a letter (at most 64)"
        );
    }
    // A Rust project vendors crates of these names: one more would clash.
    if name == "wasmhook-sdk" || name == "wasmhook-sdk-macros" {
        bail!("{name:?} is the SDK's own name; pick another");
    }
    Ok(())
}

fn write_project(dir: &Path, name: &str, lang: Lang) -> anyhow::Result<()> {
    for (dest, text) in project_files(lang) {
        let path = dir.join(&dest);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        // The vendored SDK and WIT are copied as they are; only the
        // template's own files have placeholders.
        let text = if is_vendored(&dest) {
            text.to_string()
        } else {
            templates::render(text, name)
        };
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn is_vendored(dest: &str) -> bool {
    ["vendor/", "wasmhook-sdk/", "wasmhook/", "wit/"]
        .iter()
        .any(|p| dest.starts_with(p))
}

/// The loop, as the project's README gives it.
fn next_steps(lang: Lang, name: &str) -> String {
    let steps: &[(&str, &str)] = match lang {
        Lang::Rust => &[
            ("cargo test", "the logic, natively"),
            (
                "wasmhook plugin build",
                "the .wasm (needs: rustup target add wasm32-wasip2)",
            ),
            (
                "wasm=$(wasmhook plugin build) && wasmhook plugin run \"$wasm\" events/sample.json",
                "try it",
            ),
            (
                "wasmhook plugin build --deploy <router>/plugins",
                "hot-deploy it",
            ),
        ],
        Lang::Js => &[
            ("npm install", "the SDK and the build tools (jco)"),
            ("npm test", "the logic, natively (node --test)"),
            ("wasmhook plugin build", "the .wasm (npm run build)"),
            (
                "wasm=$(wasmhook plugin build) && wasmhook plugin run \"$wasm\" events/sample.json",
                "try it",
            ),
            (
                "wasmhook plugin build --deploy <router>/plugins",
                "hot-deploy it",
            ),
        ],
        Lang::Python => &[
            (
                "python3 -m venv .venv && . .venv/bin/activate",
                "a place for the tools",
            ),
            (
                "pip install -r requirements-dev.txt",
                "componentize-py and pytest",
            ),
            ("python -m pytest", "the logic, natively"),
            ("wasmhook plugin build", "the .wasm (componentize-py)"),
            (
                "wasm=$(wasmhook plugin build) && wasmhook plugin run \"$wasm\" events/sample.json",
                "try it",
            ),
            (
                "wasmhook plugin build --deploy <router>/plugins",
                "hot-deploy it",
            ),
        ],
    };
    let width = steps.iter().map(|(c, _)| c.len()).max().unwrap_or(0);
    let mut out: String = steps
        .iter()
        .map(|(cmd, why)| format!("  {cmd:width$}  # {why}\n"))
        .collect();
    out.push_str(&format!(
        "\nThe router serves it as {name:?} from <router>/plugins/{name}.wasm. See README.md."
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        for good in ["a", "my-filter", "x2"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "My", "2x", "a_b", "a-", "../x", "a b", "wasmhook-sdk"] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_language_vendors_its_sdk_and_the_wit() {
        for lang in [Lang::Rust, Lang::Js, Lang::Python] {
            let files = project_files(lang);
            let paths: Vec<&str> = files.iter().map(|(p, _)| p.as_str()).collect();
            assert!(
                paths.iter().any(|p| p.ends_with("plugin.wit")),
                "{lang:?}: {paths:?}"
            );
            assert!(paths.contains(&".gitignore") && paths.contains(&"events/sample.json"));
            assert!(paths.contains(&"README.md"));
            // Nothing points back at the machine this binary was built on.
            for (path, text) in &files {
                assert!(!text.contains(env!("CARGO_MANIFEST_DIR")), "{path}");
            }
        }
    }
}
