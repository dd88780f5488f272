//! A component for another world: it exports a plain function, not the
//! wasmhook plugin's `handle`. The router must refuse to load it.

#[allow(unsafe_code)]
#[unsafe(no_mangle)]
pub extern "C" fn add(a: i32, b: i32) -> i32 {
    a.wrapping_add(b)
}
