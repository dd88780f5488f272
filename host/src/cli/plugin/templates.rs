//! The plugin templates and SDKs, compiled into the binary.
//!
//! `wasmhook plugin new` writes these files, so a scaffold never needs a
//! wasmhook checkout: the Rust SDK crate, the JS and Python SDK modules and
//! the WIT are the very files this binary was built with, vendored into
//! the new project. In template files `{{name}}` is the plugin's name,
//! `{{crate}}` its Rust crate name and `{{version}}` wasmhook's version.
//!
//! Invariant: every file under `host/templates/` and the SDK folders is
//! listed here (a unit test walks the folders), so a new template file
//! cannot be forgotten.

/// One file to write: its path in the new project, and its text.
pub type File = (&'static str, &'static str);

macro_rules! files {
    ($($dest:literal => $src:literal),* $(,)?) => {
        &[$(($dest, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/", $src)))),*]
    };
}

/// The plugin contract, vendored into every project.
pub const WIT: &str = include_str!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../plugin-sdk/wit/plugin.wit"
));

pub const RUST: &[File] = files![
    "Cargo.toml" => "templates/rust/Cargo.toml",
    "src/lib.rs" => "templates/rust/src/lib.rs",
    "events/sample.json" => "templates/rust/events/sample.json",
    ".gitignore" => "templates/rust/.gitignore",
    ".cargo/config.toml" => "templates/rust/.cargo/config.toml",
    "README.md" => "templates/rust/README.md",
];

/// The Rust SDK crate, copied under `vendor/wasmhook-sdk/` unchanged.
pub const RUST_SDK: &[File] = files![
    "Cargo.toml" => "../plugin-sdk/Cargo.toml",
    "src/lib.rs" => "../plugin-sdk/src/lib.rs",
    "src/config.rs" => "../plugin-sdk/src/config.rs",
    "src/error.rs" => "../plugin-sdk/src/error.rs",
    "src/event.rs" => "../plugin-sdk/src/event.rs",
    "src/log.rs" => "../plugin-sdk/src/log.rs",
    "src/outcome.rs" => "../plugin-sdk/src/outcome.rs",
    "wit/plugin.wit" => "../plugin-sdk/wit/plugin.wit",
    "macros/Cargo.toml" => "../plugin-sdk/macros/Cargo.toml",
    "macros/src/lib.rs" => "../plugin-sdk/macros/src/lib.rs",
];

pub const JS: &[File] = files![
    "package.json" => "templates/js/package.json",
    "src/plugin.js" => "templates/js/src/plugin.js",
    "src/entry.js" => "templates/js/src/entry.js",
    "test/plugin.test.js" => "templates/js/test/plugin.test.js",
    "events/sample.json" => "templates/js/events/sample.json",
    ".gitignore" => "templates/js/.gitignore",
    "README.md" => "templates/js/README.md",
];

/// The JS SDK package, copied under `wasmhook-sdk/` (its own tests stay here).
pub const JS_SDK: &[File] = files![
    "package.json" => "../plugin-sdk/js/package.json",
    "index.js" => "../plugin-sdk/js/index.js",
    "index.d.ts" => "../plugin-sdk/js/index.d.ts",
    "component.js" => "../plugin-sdk/js/component.js",
    "utf8.js" => "../plugin-sdk/js/utf8.js",
    "README.md" => "../plugin-sdk/js/README.md",
];
pub const PYTHON: &[File] = files![
    "pyproject.toml" => "templates/python/pyproject.toml",
    "plugin.py" => "templates/python/plugin.py",
    "app.py" => "templates/python/app.py",
    "test_plugin.py" => "templates/python/test_plugin.py",
    "events/sample.json" => "templates/python/events/sample.json",
    "requirements-dev.txt" => "templates/python/requirements-dev.txt",
    ".gitignore" => "templates/python/.gitignore",
    "README.md" => "templates/python/README.md",
];

/// The Python SDK package, copied under `wasmhook/` (its own tests stay here).
pub const PYTHON_SDK: &[File] = files![
    "__init__.py" => "../plugin-sdk/python/wasmhook/__init__.py",
    "_config.py" => "../plugin-sdk/python/wasmhook/_config.py",
    "_event.py" => "../plugin-sdk/python/wasmhook/_event.py",
    "_glue.py" => "../plugin-sdk/python/wasmhook/_glue.py",
    "_outcome.py" => "../plugin-sdk/python/wasmhook/_outcome.py",
    "log.py" => "../plugin-sdk/python/wasmhook/log.py",
];

/// Fill in a template's placeholders.
pub fn render(text: &str, name: &str) -> String {
    text.replace("{{name}}", name)
        .replace("{{crate}}", &name.replace('-', "_"))
        .replace("{{version}}", env!("CARGO_PKG_VERSION"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn files_under(dir: &Path) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                let name = path.file_name().unwrap().to_string_lossy().into_owned();
                if name == "target" || name == "node_modules" || name == "__pycache__" {
                    continue;
                }
                if path.is_dir() {
                    stack.push(path);
                } else {
                    out.push(path.strip_prefix(dir).unwrap().to_path_buf());
                }
            }
        }
        out.sort();
        out
    }

    fn listed(files: &[File]) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = files.iter().map(|(d, _)| PathBuf::from(d)).collect();
        v.sort();
        v
    }

    #[test]
    fn every_template_and_sdk_file_is_embedded() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        assert_eq!(files_under(&root.join("templates/rust")), listed(RUST));
        assert_eq!(files_under(&root.join("templates/js")), listed(JS));
        let mut js = files_under(&root.join("../plugin-sdk/js"));
        js.retain(|p| !p.starts_with("test"));
        assert_eq!(js, listed(JS_SDK));
        assert_eq!(files_under(&root.join("templates/python")), listed(PYTHON));
        assert_eq!(
            files_under(&root.join("../plugin-sdk/python/wasmhook")),
            listed(PYTHON_SDK)
        );
        let mut sdk = files_under(&root.join("../plugin-sdk"));
        sdk.retain(|p| {
            let first = p.components().next().unwrap().as_os_str();
            first == "src" || first == "wit" || first == "macros" || p == Path::new("Cargo.toml")
        });
        assert_eq!(sdk, listed(RUST_SDK));
    }

    #[test]
    fn the_vendored_sdk_has_the_binary_s_version() {
        let manifest = RUST_SDK.iter().find(|(d, _)| *d == "Cargo.toml").unwrap().1;
        let want = format!("version = \"{}\"", env!("CARGO_PKG_VERSION"));
        assert!(
            manifest.contains(&want),
            "plugin-sdk/Cargo.toml must say {want}"
        );
    }

    #[test]
    fn plugin_build_asks_for_the_componentize_py_the_template_pins() {
        let (_, requirements) = PYTHON
            .iter()
            .find(|(d, _)| *d == "requirements-dev.txt")
            .unwrap();
        assert!(
            requirements
                .lines()
                .any(|l| l == super::super::build::COMPONENTIZE_PY)
        );
    }

    #[test]
    fn placeholders_are_filled() {
        assert_eq!(
            render("{{name}} {{crate}}", "my-filter"),
            "my-filter my_filter"
        );
        for (dest, text) in RUST.iter().chain(JS).chain(PYTHON) {
            let out = render(text, "x");
            assert!(!out.contains("{{"), "{dest} keeps a placeholder");
        }
    }
}
