//! What a component needs from the instance pool, and what built it.
//!
//! Read once per load from the `.wasm` bytes. A Rust `wasm32-wasip2`
//! component has 3 core instances; jco's QuickJS one 11 and a
//! componentize-py one 14. A call reserves its plugin's real numbers from
//! the pool (`pool.rs`), so large components share the pool with small ones
//! instead of running it dry.
//!
//! The toolchain, read from the `producers` custom sections, lets errors
//! speak the plugin author's language: a Python author is not told to run
//! cargo.

use wasmtime::wasmparser::{self, KnownCustom, Parser, Payload};

/// The pool resources one instance of a component takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
pub struct Footprint {
    pub core_instances: u32,
    pub memories: u32,
    pub tables: u32,
}

/// What built a plugin, as its `producers` sections say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Toolchain {
    Rust,
    JavaScript,
    Python,
    Unknown,
}

impl Toolchain {
    /// Read the `producers` sections of a module or component (nested ones
    /// included), and the runtimes it embeds. Stops at the first parse
    /// error: a file too broken to parse has no toolchain to name.
    pub fn of(wasm: &[u8]) -> Toolchain {
        // A JS or Python runtime is itself built from Rust and C, and
        // componentize-py writes no producers entry of its own: the
        // runtime's module names give the language away.
        if contains(wasm, b"componentize_py_runtime") {
            return Toolchain::Python;
        }
        if contains(wasm, b"componentize_qjs_runtime") || contains(wasm, b"StarlingMonkey") {
            return Toolchain::JavaScript;
        }
        let mut found = Toolchain::Unknown;
        for payload in Parser::new(0).parse_all(wasm) {
            let Ok(Payload::CustomSection(section)) = payload else {
                if payload.is_err() {
                    break;
                }
                continue;
            };
            let KnownCustom::Producers(fields) = section.as_known() else {
                continue;
            };
            for field in fields.into_iter().flatten() {
                for value in field.values.into_iter().flatten() {
                    let name = value.name.to_ascii_lowercase();
                    // A JS or Python runtime is itself often written in Rust
                    // or C, so their tools outrank the language field.
                    if name.contains("componentize-py") {
                        return Toolchain::Python;
                    }
                    if name.contains("componentize-js")
                        || name.contains("componentize-qjs")
                        || name.contains("jco")
                        || name.contains("starlingmonkey")
                    {
                        return Toolchain::JavaScript;
                    }
                    if found == Toolchain::Unknown && (name == "rust" || name == "rustc") {
                        found = Toolchain::Rust;
                    }
                }
            }
        }
        found
    }

    /// Name for people.
    pub fn label(self) -> &'static str {
        match self {
            Toolchain::Rust => "Rust",
            Toolchain::JavaScript => "JavaScript",
            Toolchain::Python => "Python",
            Toolchain::Unknown => "unknown",
        }
    }

    /// How to build a loadable plugin with this toolchain.
    pub fn build_hint(self) -> &'static str {
        match self {
            Toolchain::Rust => {
                "build Rust plugins with `wasmhook plugin build` or `cargo build --release --target wasm32-wasip2`"
            }
            Toolchain::JavaScript => {
                "build JavaScript plugins with `wasmhook plugin build` (jco componentize --backend qjs --backend-qjs-disable-async, as the template's `npm run build` does)"
            }
            Toolchain::Python => {
                "build Python plugins with `wasmhook plugin build` (componentize-py -d wit -w plugin componentize, as the template does)"
            }
            Toolchain::Unknown => {
                "build plugins with `wasmhook plugin build` (Rust, JavaScript or Python), from a project made by `wasmhook plugin new`"
            }
        }
    }
}

/// Whether `needle` occurs in `haystack` (a plain scan: once per load).
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    let Some((&first, rest)) = needle.split_first() else {
        return true;
    };
    let last_start = haystack.len().saturating_sub(needle.len());
    (0..=last_start).any(|i| {
        haystack.len() >= needle.len()
            && haystack[i] == first
            && &haystack[i + 1..i + needle.len()] == rest
    })
}

impl Footprint {
    /// Count core instantiations and the memories and tables the
    /// instantiated modules define, across nested modules and components.
    /// A module defined but never instantiated costs nothing; one
    /// instantiated twice would count once, so the pool keeps a reserve
    /// (and a call that still finds it full waits and retries).
    pub fn of(wasm: &[u8]) -> Result<Footprint, wasmparser::BinaryReaderError> {
        let mut fp = Footprint {
            core_instances: 0,
            memories: 0,
            tables: 0,
        };
        for payload in Parser::new(0).parse_all(wasm) {
            match payload? {
                Payload::InstanceSection(section) => {
                    for instance in section {
                        if let wasmparser::Instance::Instantiate { .. } = instance? {
                            fp.core_instances += 1;
                        }
                    }
                }
                Payload::MemorySection(section) => fp.memories += section.count(),
                Payload::TableSection(section) => fp.tables += section.count(),
                _ => {}
            }
        }
        // Even an empty component is one instance of something.
        fp.core_instances = fp.core_instances.max(1);
        Ok(fp)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";
    const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

    #[test]
    fn an_empty_module_or_component_still_takes_one_instance() {
        let one = Footprint {
            core_instances: 1,
            memories: 0,
            tables: 0,
        };
        assert_eq!(Footprint::of(EMPTY_MODULE).unwrap(), one);
        assert_eq!(Footprint::of(EMPTY_COMPONENT).unwrap(), one);
        assert!(Footprint::of(b"not wasm").is_err());
    }

    #[test]
    fn the_embedded_runtime_names_the_language() {
        let mut py = EMPTY_COMPONENT.to_vec();
        py.extend_from_slice(b"..componentize_py_runtime..");
        assert_eq!(Toolchain::of(&py), Toolchain::Python);
        let mut js = EMPTY_COMPONENT.to_vec();
        js.extend_from_slice(b"componentize_qjs_runtime");
        assert_eq!(Toolchain::of(&js), Toolchain::JavaScript);
        assert!(contains(b"abc", b"bc") && !contains(b"ab", b"abc") && !contains(b"", b"a"));
    }

    #[test]
    fn no_producers_section_is_an_unknown_toolchain() {
        assert_eq!(Toolchain::of(EMPTY_COMPONENT), Toolchain::Unknown);
        assert_eq!(Toolchain::of(b"not wasm"), Toolchain::Unknown);
    }
}
