//! Hostile test plugin: tries to reach the network, the filesystem and the
//! environment, and reports what it got. None of it may be granted.
use wasmhook_sdk::prelude::*;

#[plugin]
pub fn handle(mut ev: Event, cfg: &Config) -> Result<Outcome> {
    // The test listens on this address and checks that nothing connects.
    let addr = cfg.get_or("connect", "127.0.0.1:9");
    let net = match std::net::TcpStream::connect(addr) {
        Ok(_) => "connected".to_string(),
        Err(e) => format!("refused: {e}"),
    };
    let fs = match std::fs::read_dir("/") {
        Ok(d) => format!("listed {} entries", d.count()),
        Err(e) => format!("refused: {e}"),
    };
    let file = match std::fs::read("/etc/passwd") {
        Ok(b) => format!("read {} bytes", b.len()),
        Err(e) => format!("refused: {e}"),
    };
    let env = std::env::vars().count();
    let args = std::env::args().count();
    ev.set_json(&json!({ "net": net, "fs": fs, "file": file, "env_vars": env, "args": args }))?;
    Ok(Outcome::keep(ev))
}
