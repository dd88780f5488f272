//! Log lines into the router's log, tagged with the plugin's name.
//!
//! Outside WebAssembly (native unit tests) they go to stderr.

#[cfg(target_arch = "wasm32")]
use crate::__bindings::wasmhook::plugin::host::{self, Level};

#[cfg(target_arch = "wasm32")]
fn write(level: Level, message: &str) {
    host::log(level, message);
}

#[cfg(not(target_arch = "wasm32"))]
#[allow(clippy::print_stderr)]
fn write(level: &str, message: &str) {
    eprintln!("[{level}] {message}");
}

macro_rules! level_fn {
    ($name:ident, $level:ident, $label:literal) => {
        #[doc = concat!("Log at ", $label, " level.")]
        pub fn $name(message: impl AsRef<str>) {
            #[cfg(target_arch = "wasm32")]
            write(Level::$level, message.as_ref());
            #[cfg(not(target_arch = "wasm32"))]
            write($label, message.as_ref());
        }
    };
}

level_fn!(trace, Trace, "trace");
level_fn!(debug, Debug, "debug");
level_fn!(info, Info, "info");
level_fn!(warn, Warn, "warn");
level_fn!(error, Error, "error");
