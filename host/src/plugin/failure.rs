//! Why a plugin failed to load or to run, said the way its author thinks:
//! a panic as its message and place, a Python traceback as its last line,
//! a load error in the terms of the toolchain that built the file.

use super::footprint::Toolchain;

/// A clear error for the common wrong files, before wasmtime's parser speaks.
pub(super) fn check_component_header(wasm: &[u8]) -> Result<(), &'static str> {
    if wasm.is_empty() {
        return Err("the file is empty");
    }
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err("the file is not WebAssembly (no \\0asm header)");
    }
    if wasm[4..8] == [1, 0, 0, 0] {
        return Err("this is a core WebAssembly module, not a component");
    }
    Ok(())
}

/// What to do about a component that cannot load, in the terms of the
/// toolchain that built it.
pub(super) fn load_hint(detail: &str, toolchain: Toolchain) -> String {
    if detail.contains("wasi:http") {
        return match toolchain {
            Toolchain::JavaScript => "it imports wasi:http, which plugins are not granted: jco's default \
                (StarlingMonkey) backend adds it unless built with `-d all`; the template builds with \
                `--backend qjs --backend-qjs-disable-async` (`wasmhook plugin build`)"
                .into(),
            _ => "it imports wasi:http, which plugins are not granted: a plugin reaches the network \
                only by emitting events to configured targets"
                .into(),
        };
    }
    if toolchain == Toolchain::JavaScript && detail.contains("async") {
        return "it uses the component-model async ABI, which jco's QuickJS backend emits unless \
            built with `--backend-qjs-disable-async`, as the template's `npm run build` does \
            (`wasmhook plugin build`)"
            .into();
    }
    format!(
        "a plugin imports only wasmhook:plugin/host and WASI, and exports `handle` (plugin-sdk/wit/plugin.wit); {}",
        toolchain.build_hint()
    )
}

/// A readable message from what a plugin printed as it died: Rust's panic
/// message with its location, or the last line of a Python traceback with
/// the innermost frame. `None` when it printed neither.
pub(super) fn failure_summary(printed: &str, toolchain: Toolchain) -> Option<String> {
    match toolchain {
        // CPython's runtime is Rust: its own panic ("Python function threw
        // an unexpected exception") follows the traceback that says why.
        Toolchain::Python => python_traceback(printed).or_else(|| rust_panic(printed)),
        Toolchain::Rust => rust_panic(printed),
        _ => rust_panic(printed).or_else(|| python_traceback(printed)),
    }
}

/// `thread '…' panicked at src/lib.rs:10:32:\nmessage\nnote: run with …`
/// → `panicked at src/lib.rs:10:32: message`.
fn rust_panic(printed: &str) -> Option<String> {
    let start = printed.rfind("panicked at ")?;
    let rest = &printed[start + "panicked at ".len()..];
    let (location, message) = match rest.split_once(":\n") {
        Some((loc, msg)) if !loc.contains('\n') => (loc, msg),
        // Older std: `panicked at 'message', src/lib.rs:10:32`.
        _ => {
            let line = rest.lines().next()?;
            return Some(format!("panicked at {}", line.trim_end()));
        }
    };
    let message: Vec<&str> = message
        .lines()
        .take_while(|l| !l.starts_with("note: run with `RUST_BACKTRACE"))
        .collect();
    Some(format!(
        "panicked at {location}: {}",
        message.join(" ").trim()
    ))
}

/// `Traceback (most recent call last):\n  File "app.py", line 12, in handle\n …\nValueError: x`
/// → `ValueError: x (at app.py:12)`.
fn python_traceback(printed: &str) -> Option<String> {
    let start = printed.rfind("Traceback (most recent call last):")?;
    // The frames are indented; the first line after them that is not is
    // the exception (whatever the runtime printed after it is not).
    let lines: Vec<&str> = printed[start..].lines().skip(1).collect();
    let end = lines
        .iter()
        .position(|l| !l.trim().is_empty() && !l.starts_with(' '))?;
    let error = lines[end];
    let lines = &lines[..end];
    let place = lines.iter().rev().find_map(|l| {
        let l = l.trim_start().strip_prefix("File \"")?;
        let (file, rest) = l.split_once('"')?;
        let line = rest.trim_start_matches(", line ").split(',').next()?;
        let file = file.rsplit('/').next().unwrap_or(file);
        Some(format!("{file}:{line}"))
    });
    Some(match place {
        Some(place) => format!("raised {} (at {place})", error.trim()),
        None => format!("raised {}", error.trim()),
    })
}

/// The trap's message and the innermost guest frames, on one line.
pub(super) fn trap_summary(trap: &wasmtime::Error) -> String {
    let mut summary = match trap.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::StackOverflow) => {
            "call stack exhausted (endless recursion?)".to_string()
        }
        Some(wasmtime::Trap::MemoryOutOfBounds) if overflowed_stack_in_memory(trap) => {
            "call stack exhausted: the stack in the plugin's memory overflowed \
             (endless recursion, or a stack too small: see -zstack-size in the \
             template's .cargo/config.toml)"
                .to_string()
        }
        Some(t) => t.to_string(),
        None => trap.to_string(),
    };
    if let Some(bt) = trap.downcast_ref::<wasmtime::WasmBacktrace>() {
        let frames: Vec<String> = bt
            .frames()
            .iter()
            .take(3)
            .map(|f| f.func_name().unwrap_or("?").to_string())
            .collect();
        if !frames.is_empty() {
            summary.push_str(" at ");
            summary.push_str(&frames.join(" <- "));
        }
    }
    summary
}

/// Whether an out-of-bounds access was a stack overflowing in linear
/// memory. Rust and C keep their stack at the bottom of the memory,
/// growing down (`--stack-first`), so one that overflows wraps below
/// address 0 and faults, deep in a recursion. wasmtime cannot say where it
/// faulted here (its bounds checks are explicit), and keeps the innermost
/// 20 frames: an access out of bounds with all 20 taken by a cycle of at
/// most a few functions is taken for an overflow.
fn overflowed_stack_in_memory(trap: &wasmtime::Error) -> bool {
    const KEPT_FRAMES: usize = 20;
    const CYCLE: usize = 3;
    trap.downcast_ref::<wasmtime::WasmBacktrace>()
        .is_some_and(|bt| {
            let frames = bt.frames();
            let mut names: Vec<Option<&str>> = frames.iter().map(|f| f.func_name()).collect();
            names.sort_unstable();
            names.dedup();
            frames.len() >= KEPT_FRAMES && names.len() <= CYCLE
        })
}

/// Whether wasmtime stopped copying out of the guest because the budget of
/// `copy_budget` ran out. Its error type is private; its message is not.
pub(super) fn is_copy_budget_exhausted(error: &wasmtime::Error) -> bool {
    format!("{error:#}").contains("fuel allocated for hostcalls has been exhausted")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rust_panic_reads_as_its_message_and_place() {
        let printed = "thread '<unnamed>' panicked at src/lib.rs:10:32:\n\
            every regional event has a numeric /n\n\
            note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n";
        assert_eq!(
            failure_summary(printed, Toolchain::Rust).as_deref(),
            Some("panicked at src/lib.rs:10:32: every regional event has a numeric /n")
        );
        assert_eq!(failure_summary("just a log line\n", Toolchain::Rust), None);
    }

    #[test]
    fn python_s_own_error_outranks_its_runtime_s_panic() {
        let printed = "Traceback (most recent call last):\n  \
            File \"/0/app.py\", line 17, in handle\n\
            AttributeError: module 'plugin' has no attribute 'handle'\n\
            thread '<unnamed>' panicked at runtime/src/lib.rs:1293:29:\n\
            Python function threw an unexpected exception\n";
        assert_eq!(
            failure_summary(printed, Toolchain::Python).as_deref(),
            Some("raised AttributeError: module 'plugin' has no attribute 'handle' (at app.py:17)")
        );
    }

    #[test]
    fn a_python_traceback_reads_as_its_last_line_and_place() {
        let printed = "Traceback (most recent call last):\n  \
            File \"/app/plugin.py\", line 12, in handle\n    n = int(v)\n\
            ValueError: invalid literal for int() with base 10: 'x'\n";
        assert_eq!(
            failure_summary(printed, Toolchain::Python).as_deref(),
            Some(
                "raised ValueError: invalid literal for int() with base 10: 'x' (at plugin.py:12)"
            )
        );
    }
}
