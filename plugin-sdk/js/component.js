// The glue between a plugin's `handle(ev, cfg)` and the component's WIT export.
// Only loadable inside the component build (it imports the WIT host interface);
// the project's src/entry.js imports it *before* the plugin, so the globals
// below exist while the plugin's own module code runs.

import { log as hostLog, config as hostConfig, utf8Decode, utf8Encode } from "wasmhook:plugin/host@0.1.0";
import { callHandler, setLogSink } from "./index.js";
import { useNativeCodec } from "./utf8.js";

// Module top-level code runs once at build time (Wizer snapshots the result),
// where there is no host: log lines from then are dropped, not a build failure.
let live = false;
const write = (level, message) => live && hostLog(level, message);
setLogSink(write);
// TextEncoder/TextDecoder through the host's UTF-8 codec, once there is one.
useNativeCodec({ ready: () => live, decode: utf8Decode, encode: utf8Encode });

// QuickJS under jco has no console: send it to the router's log.
if (typeof globalThis.console === "undefined") {
  const line = (args) =>
    args.map((a) => (typeof a === "string" ? a : a instanceof Error ? `${a.name}: ${a.message}` : safeJson(a))).join(" ");
  const to = (level) => (...args) => write(level, line(args));
  globalThis.console = { log: to("info"), info: to("info"), warn: to("warn"), error: to("error"), debug: to("debug"), trace: to("trace") };
}

function safeJson(v) {
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return String(v);
  }
}

/** Turn `handle(ev, cfg) -> Outcome` into the WIT export `handle(event) -> result<outcome, string>`. */
export function exportPlugin(handler) {
  if (typeof handler !== "function") {
    throw new TypeError("src/plugin.js must export a function named handle(ev, cfg)");
  }
  return (wireEvent) => {
    live = true;
    return callHandler(handler, wireEvent, hostConfig());
  };
}
