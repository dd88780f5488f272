// wasmhook-sdk: write wasmhook plugins in plain JavaScript.
//
// A plugin is one function `handle(ev, cfg)` from an Event and its per-route
// Config to an Outcome. This module is pure JavaScript with no WIT imports, so
// `node --test` runs plugin logic natively; ./component.js adapts it to the
// component's `handle` export inside WebAssembly.

import { installTextCoding } from "./utf8.js";

// QuickJS under jco has no TextEncoder/TextDecoder: give plugins (and us) one.
installTextCoding();

const OUTCOME = Symbol.for("wasmhook-sdk.outcome");
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function toBytes(body) {
  if (body === undefined) return new Uint8Array(0);
  if (body instanceof Uint8Array) return body;
  if (typeof body === "string") return encoder.encode(body);
  if (body instanceof ArrayBuffer) return new Uint8Array(body);
  if (ArrayBuffer.isView(body)) return new Uint8Array(body.buffer, body.byteOffset, body.byteLength);
  return null; // anything else is JSON: the caller decides
}

function toHeaders(headers) {
  const list = Array.isArray(headers) ? headers : Object.entries(headers ?? {});
  return list.map(([k, v]) => [String(k).toLowerCase(), String(v)]);
}

/** One webhook event, as a plugin sees it. */
export class Event {
  /**
   * Every field is optional, for tests: `new Event({ type: "push", body: { a: 1 } })`.
   * A body that is not a string or bytes is serialised as JSON (and sets
   * content-type: application/json).
   */
  constructor({ id = "evt_test", source = "test", type = "test", receivedAt = 0, headers = [], body } = {}) {
    this.id = id;
    this.source = source;
    /** The event type (WIT `event-type`), e.g. "push". */
    this.type = type;
    /** When the router received it, in ms since the Unix epoch. */
    this.receivedAt = Number(receivedAt);
    /** `[name, value]` pairs, lower-case names, in the order received. */
    this.headers = toHeaders(headers);
    /** The raw body. */
    this.body = new Uint8Array(0);
    this.withBody(body);
  }

  /** The first value of header `name` (case-insensitive), or undefined. */
  header(name) {
    const n = String(name).toLowerCase();
    const h = this.headers.find(([k]) => k === n);
    return h ? h[1] : undefined;
  }

  /** Set header `name`, replacing every existing value. */
  setHeader(name, value) {
    this.removeHeader(name);
    this.headers.push([String(name).toLowerCase(), String(value)]);
    return this;
  }

  /** Remove every value of header `name` (case-insensitive). */
  removeHeader(name) {
    const n = String(name).toLowerCase();
    this.headers = this.headers.filter(([k]) => k !== n);
    return this;
  }

  withHeader(name, value) {
    return this.setHeader(name, value);
  }

  /** Replace the body: a string (UTF-8), bytes, or any other value as JSON. */
  withBody(body) {
    const bytes = toBytes(body);
    return bytes ? ((this.body = bytes), this) : this.setJson(body);
  }

  withJson(value) {
    return this.setJson(value);
  }

  /** The body decoded as UTF-8 (invalid bytes become U+FFFD). */
  text() {
    return decoder.decode(this.body);
  }

  /** The body parsed as JSON. */
  json() {
    try {
      return JSON.parse(this.text());
    } catch (e) {
      throw new SyntaxError(`event body is not JSON: ${e.message}`);
    }
  }

  /** Replace the body with `value` as JSON, and set content-type: application/json. */
  setJson(value) {
    const text = JSON.stringify(value);
    if (text === undefined) throw new TypeError(`cannot serialise ${typeof value} as a JSON body`);
    this.body = encoder.encode(text);
    return this.setHeader("content-type", "application/json");
  }

  /** A copy (headers and body copied too), with `changes` applied. */
  clone(changes = {}) {
    return new Event({ ...this, headers: this.headers, body: this.body.slice(), ...changes });
  }
}

function toOutput(item) {
  if (item instanceof Event) return { event: item, targets: [] };
  if (item && item.event instanceof Event) return { event: item.event, targets: [...(item.targets ?? [])] };
  throw new TypeError(`Outcome.emit takes Events (or { event, targets }), got ${describe(item)}`);
}

/** What a plugin decides for one event: drop it, or emit zero or more events. */
export class Outcome {
  constructor(dropReason, outputs) {
    this[OUTCOME] = true;
    this._drop = dropReason;
    this._outputs = outputs;
  }

  /** Pass the event on (changed or not). */
  static keep(ev) {
    return Outcome.emit([ev]);
  }

  /** Stop the event; the router records `reason`. */
  static drop(reason) {
    return new Outcome(String(reason ?? ""), null);
  }

  /** Emit these events to the route's own targets (Events, or `{ event, targets }`). */
  static emit(events) {
    return new Outcome(null, [...events].map(toOutput));
  }

  /** Send `ev` to these configured targets instead of the route's. */
  static route(ev, targets) {
    const names = typeof targets === "string" ? [targets] : [...targets];
    return new Outcome(null, [toOutput({ event: ev, targets: names.map(String) })]);
  }

  get isDrop() {
    return this._drop !== null;
  }
  get isEmit() {
    return this._drop === null;
  }
  /** The drop reason, or undefined for an emit. */
  get dropReason() {
    return this._drop ?? undefined;
  }
  /** The emitted events (empty for a drop). */
  get events() {
    return (this._outputs ?? []).map((o) => o.event);
  }
  /** `{ event, targets }` per emitted event. */
  get outputs() {
    return this._outputs ?? [];
  }
  /** Every target name the outputs name, once each, in order. */
  get targets() {
    return [...new Set(this.outputs.flatMap((o) => o.targets))];
  }
}

/** This plugin's config on the current route: string keys and values. */
export class Config {
  /** @param {Iterable<[string, string]>} pairs */
  constructor(pairs = []) {
    this.pairs = [...pairs].map(([k, v]) => [String(k), String(v)]);
  }

  /** For tests: `Config.from({ min: "3", allow: "push, release" })`. */
  static from(obj = {}) {
    return new Config(Object.entries(obj));
  }

  /** The value of `key`, or undefined. */
  get(key) {
    const p = this.pairs.find(([k]) => k === key);
    return p ? p[1] : undefined;
  }

  getOr(key, fallback) {
    return this.get(key) ?? fallback;
  }

  /** A comma-separated value as trimmed, non-empty items ([] when missing). */
  list(key) {
    return (this.get(key) ?? "").split(",").map((s) => s.trim()).filter(Boolean);
  }

  int(key, fallback) {
    return this._typed(key, fallback, "an integer", (v) => (/^[+-]?\d+$/.test(v) ? Number(v) : undefined));
  }

  number(key, fallback) {
    return this._typed(key, fallback, "a number", (v) => (v !== "" && isFinite(v) ? Number(v) : undefined));
  }

  /** true/false, 1/0, yes/no, on/off (any case). */
  bool(key, fallback) {
    return this._typed(key, fallback, "a boolean (true/false, yes/no, on/off, 1/0)", (v) => BOOLS[v.toLowerCase()]);
  }

  _typed(key, fallback, what, parse) {
    const raw = this.get(key);
    if (raw === undefined) {
      if (fallback !== undefined) return fallback;
      throw new Error(`config "${key}" is required (${what})`);
    }
    const v = parse(raw.trim());
    if (v === undefined) throw new Error(`config "${key}" must be ${what}, got ${JSON.stringify(raw)}`);
    return v;
  }
}

const BOOLS = { true: true, false: false, 1: true, 0: false, yes: true, no: false, on: true, off: false };

let sink = (level, message) => console.error(`[${level}] ${message}`);

/** @internal Where log lines go: the host's `log` import inside wasm, stderr natively. */
export function setLogSink(fn) {
  sink = fn;
}

const say = (level) => (message) => sink(level, typeof message === "string" ? message : describe(message));

/** Log lines into the router's log, tagged with the plugin's name. */
export const log = {
  trace: say("trace"),
  debug: say("debug"),
  info: say("info"),
  warn: say("warn"),
  error: say("error"),
};

function describe(v) {
  if (v === undefined || v === null || typeof v !== "object") return String(v);
  if (v instanceof Error) return `${v.name}: ${v.message}`;
  if (v instanceof Event) return `an Event (${v.type})`;
  if (typeof v.then === "function") return "a Promise";
  try {
    return JSON.stringify(v) ?? String(v);
  } catch {
    return Object.prototype.toString.call(v);
  }
}

/**
 * A thrown value as one readable line: `TypeError: x is undefined (at src/plugin.js:12:5)`.
 * The location is the innermost stack frame outside this SDK. A thrown string
 * is the message as it is.
 */
export function formatError(e) {
  if (typeof e === "string") return e;
  if (!(e instanceof Error)) return `uncaught exception: ${describe(e)}`;
  const text = `${e.name}: ${e.message}`;
  for (const loc of frames(e.stack)) {
    if (isSdkFrame(loc) || loc.startsWith("node:")) continue;
    return `${text} (at ${tidyPath(loc)})`;
  }
  return text;
}

/** The `file:line:col` of each frame of a V8 or QuickJS stack trace. */
function frames(stack) {
  return String(stack ?? "")
    .split("\n")
    .map((f) => /^\s*at (?:.*? \()?(.+?:\d+(?::\d+)?)\)?\s*$/.exec(f)?.[1])
    .filter(Boolean);
}

// This SDK's folder, as stack traces spell it (its frames are never the culprit).
const SDK_DIR = (frames(new Error().stack)[0] ?? "").replace(/[^/]*$/, "");
const SDK_FILES = ["index.js", "component.js", "utf8.js"];

/** A frame in one of this SDK's own files (not in a folder below it). */
function isSdkFrame(loc) {
  if (!loc.startsWith(SDK_DIR)) return false;
  const file = loc.slice(SDK_DIR.length).replace(/:\d+(:\d+)?$/, "");
  return SDK_FILES.includes(file);
}

function tidyPath(p) {
  p = p.replace(/^file:\/\//, "");
  const cwd = globalThis.process?.cwd?.();
  if (cwd && p.startsWith(cwd + "/")) p = p.slice(cwd.length + 1);
  return p.replace(/^\//, "");
}

// ---- the wire shapes jco's QuickJS backend uses for the WIT world ----

/** @internal A WIT `event` record (camelCase fields) as an Event. */
export function fromWire(w) {
  const ev = new Event({ id: w.id, source: w.source, type: w.eventType, receivedAt: w.receivedAt });
  ev.headers = w.headers.map(([k, v]) => [k, v]);
  ev.body = w.body;
  return ev;
}

// The checks below run on every event: their messages are built only when one
// fails (describing a 1 KiB body costs more than the whole call).
function fail(what) {
  throw new TypeError(what);
}

function toWireEvent(ev, where) {
  if (!(ev instanceof Event)) fail(`${where} is not an Event, got ${describe(ev)}`);
  for (const f of ["id", "source", "type"]) {
    if (typeof ev[f] !== "string") fail(`${where}.${f} must be a string, got ${describe(ev[f])}`);
  }
  if (!(Number.isSafeInteger(ev.receivedAt) && ev.receivedAt >= 0)) {
    fail(`${where}.receivedAt must be a whole number of ms >= 0, got ${describe(ev.receivedAt)}`);
  }
  if (!Array.isArray(ev.headers)) fail(`${where}.headers must be an array of [name, value]`);
  const body = toBytes(ev.body);
  if (!body) {
    fail(`${where}.body must be a Uint8Array or a string (use ev.setJson(value) for JSON), got ${describe(ev.body)}`);
  }
  const headers = new Array(ev.headers.length);
  for (let i = 0; i < ev.headers.length; i++) {
    const h = ev.headers[i];
    if (!(Array.isArray(h) && h.length === 2)) fail(`${where}.headers[${i}] must be a [name, value] pair`);
    headers[i] = [String(h[0]).toLowerCase(), String(h[1])];
  }
  return { id: ev.id, source: ev.source, eventType: ev.type, receivedAt: ev.receivedAt, headers, body };
}

/** @internal An Outcome as the WIT `outcome` variant. */
export function toWire(out) {
  if (!(out instanceof Outcome || (out && out[OUTCOME]))) {
    const hint =
      out instanceof Event ? " (did you mean Outcome.keep(ev)?)"
      : out && typeof out.then === "function" ? " (handle must not be async: plugins run synchronously)"
      : "";
    throw new TypeError(
      `handle must return an Outcome (Outcome.keep(ev), Outcome.drop(reason), Outcome.emit([...]), Outcome.route(ev, [...])), got ${describe(out)}${hint}`,
    );
  }
  if (out.isDrop) return { tag: "drop", val: out.dropReason };
  return {
    tag: "emit",
    val: out.outputs.map((o, i) => ({
      event: toWireEvent(o.event, `output ${i}`),
      targets: o.targets.map((t) => {
        if (typeof t !== "string") fail(`output ${i}: target names must be strings, got ${describe(t)}`);
        return t;
      }),
    })),
  };
}

/**
 * @internal Run `handler` on one wire event, returning the wire outcome, or
 * throwing a string: jco's QuickJS backend turns a thrown value from the export
 * into the `err` of its `result<outcome, string>`.
 */
export function callHandler(handler, wireEvent, configPairs) {
  let out;
  try {
    out = handler(fromWire(wireEvent), new Config(configPairs));
  } catch (e) {
    throw formatError(e);
  }
  try {
    return toWire(out);
  } catch (e) {
    throw `${e.name}: ${e.message}`; // about the returned value: no location to give
  }
}
