//! Write wasmhook plugins in a few lines of Rust.
//!
//! A plugin is one function from an [`Event`] and its per-route [`Config`] to an
//! [`Outcome`]: drop the event with a reason, or emit zero or more events.
//!
//! ```
//! use wasmhook_sdk::prelude::*;
//!
//! #[plugin]
//! fn handle(ev: Event, cfg: &Config) -> Result<Outcome> {
//!     let allowed = cfg.list("allow");
//!     Ok(if allowed.contains(&ev.event_type) {
//!         Outcome::keep(ev)
//!     } else {
//!         Outcome::drop("type not allowed")
//!     })
//! }
//!
//! // The logic is an ordinary function: test it natively with `cargo test`.
//! let cfg = Config::from_pairs([("allow", "push,release")]);
//! assert!(handle(Event::new("push", "{}"), &cfg).unwrap().is_emit());
//! assert!(handle(Event::new("star", "{}"), &cfg).unwrap().is_drop());
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2` and drop the
//! `.wasm` into the router's `plugins/` folder.
//!
//! Invariant: this crate never depends on the host crate. The WIT package in
//! `wit/` is the only contract between the two.

mod config;
mod error;
mod event;
pub mod log;
mod outcome;

pub use config::Config;
pub use error::{Error, Result};
pub use event::Event;
pub use outcome::{Outcome, Output};
pub use serde_json;
pub use wasmhook_sdk_macros::plugin;

/// Everything a plugin usually needs, in one `use`.
pub mod prelude {
    pub use crate::{Config, Error, Event, Outcome, Output, Result, log, plugin};
    pub use serde_json::{Value, json};
}

/// Guest bindings generated from `wit/`. Not a stable API: use the types above.
#[doc(hidden)]
#[allow(clippy::too_many_arguments, unsafe_code, unused_qualifications)]
pub mod __bindings {
    wit_bindgen::generate!({
        path: "wit",
        world: "plugin",
        pub_export_macro: true,
        default_bindings_module: "wasmhook_sdk::__bindings",
    });
}

/// Turn a function into the plugin's export. `#[plugin]` expands to this; use it
/// directly if you prefer a macro call to an attribute:
/// `wasmhook_sdk::export_plugin!(handle);`
#[macro_export]
macro_rules! export_plugin {
    ($handler:path) => {
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            struct WasmhookPlugin;
            impl $crate::__bindings::Guest for WasmhookPlugin {
                fn handle(
                    event: $crate::__bindings::wasmhook::plugin::types::Event,
                ) -> ::core::result::Result<
                    $crate::__bindings::wasmhook::plugin::types::Outcome,
                    ::std::string::String,
                > {
                    $crate::__private::call(event, $handler)
                }
            }
    $crate::__bindings::export!(WasmhookPlugin with_types_in $crate::__bindings);
        };
    };
}

#[doc(hidden)]
pub mod __private {
    use crate::__bindings::wasmhook::plugin::types as wire;
    use crate::{Config, Event, Outcome, Result};

    /// Adapts the user's function to the generated export: converts the wire
    /// types, fetches the route config from the host, and flattens errors to
    /// the string the WIT contract carries.
    pub fn call(
        event: wire::Event,
        handler: impl FnOnce(Event, &Config) -> Result<Outcome>,
    ) -> std::result::Result<wire::Outcome, String> {
        let config = Config::from_host();
        handler(Event::from(event), &config)
            .map(wire::Outcome::from)
            .map_err(|e| e.to_string())
    }
}
