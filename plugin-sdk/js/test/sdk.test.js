// Tests of the SDK itself (not vendored into plugins): node --test tests/
import { test } from "node:test";
import assert from "node:assert/strict";
import { Config, Event, Outcome, callHandler, formatError, fromWire, log, setLogSink, toWire } from "../index.js";
import * as utf8 from "../utf8.js";

const enc = (s) => new TextEncoder().encode(s);

test("Event: defaults and body forms", () => {
  const ev = new Event();
  assert.deepEqual([ev.id, ev.source, ev.type, ev.receivedAt, ev.headers, ev.body.length], ["evt_test", "test", "test", 0, [], 0]);
  assert.equal(new Event({ body: "héllo" }).text(), "héllo");
  assert.deepEqual(new Event({ body: new Uint8Array([1, 2]) }).body, new Uint8Array([1, 2]));
  const j = new Event({ type: "push", body: { a: 1 } });
  assert.deepEqual(j.json(), { a: 1 });
  assert.equal(j.header("Content-Type"), "application/json");
  assert.equal(new Event({ body: "x" }).header("content-type"), undefined);
});

test("Event: headers are lower-cased, case-insensitive, replaced and removed", () => {
  const ev = new Event({ headers: { "X-GitHub-Event": "push" } });
  assert.deepEqual(ev.headers, [["x-github-event", "push"]]);
  assert.equal(ev.header("X-GITHUB-EVENT"), "push");
  ev.headers.push(["x-github-event", "dup"]);
  ev.setHeader("X-Github-Event", "ping");
  assert.deepEqual(ev.headers, [["x-github-event", "ping"]]);
  assert.equal(ev.removeHeader("x-github-event").header("x-github-event"), undefined);
  const chained = new Event({ headers: [["A", "1"]] }).withHeader("B", "2").withJson([1]).withHeader("a", "3");
  assert.deepEqual(chained.headers, [["b", "2"], ["content-type", "application/json"], ["a", "3"]]);
});

test("Event: json errors name the problem; setJson round-trips non-ASCII", () => {
  assert.throws(() => new Event({ body: "nope" }).json(), /^SyntaxError: event body is not JSON/);
  const s = "héllo ✓ 🎉";
  const ev = new Event().setJson({ s });
  assert.equal(ev.text(), JSON.stringify({ s }));
  assert.equal(ev.body.length, JSON.stringify({ s }).length + 5); // é +1, ✓ +2, 🎉 +2
  assert.equal(ev.json().s, s);
  assert.throws(() => ev.setJson(undefined), /cannot serialise undefined/);
});

test("Event: clone copies", () => {
  const a = new Event({ id: "e1", type: "push", headers: { h: "1" }, body: "abc" });
  const b = a.clone({ id: "e2" });
  b.body[0] = 0x7a;
  b.setHeader("h", "2");
  assert.deepEqual([a.id, a.text(), a.header("h")], ["e1", "abc", "1"]);
  assert.deepEqual([b.id, b.type, b.text(), b.header("h")], ["e2", "push", "zbc", "2"]);
});

test("Outcome: constructors and accessors", () => {
  const ev = new Event({ type: "push" });
  const keep = Outcome.keep(ev);
  assert.ok(keep.isEmit && !keep.isDrop);
  assert.equal(keep.events[0], ev);
  assert.deepEqual(keep.targets, []);
  const drop = Outcome.drop("too small");
  assert.ok(drop.isDrop && !drop.isEmit);
  assert.equal(drop.dropReason, "too small");
  assert.deepEqual(drop.events, []);
  assert.equal(keep.dropReason, undefined);
  assert.equal(Outcome.emit([ev, ev.clone()]).events.length, 2);
  assert.deepEqual(Outcome.emit([]).events, []);
  assert.deepEqual(Outcome.route(ev, ["ci", "audit"]).targets, ["ci", "audit"]);
  assert.deepEqual(Outcome.route(ev, "ci").targets, ["ci"]);
  const mixed = Outcome.emit([{ event: ev, targets: ["a", "b"] }, { event: ev, targets: ["b", "c"] }, ev]);
  assert.deepEqual(mixed.targets, ["a", "b", "c"]);
  assert.throws(() => Outcome.emit([{}]), /Outcome.emit takes Events/);
});

test("Config: strings, lists, typed values, clear errors", () => {
  const cfg = Config.from({ allow: " push, release,,ping ", min: "3", neg: "-2", ratio: "0.5", on: "Yes", off: "0", bad: "1.5" });
  assert.equal(cfg.get("min"), "3");
  assert.equal(cfg.get("nope"), undefined);
  assert.equal(cfg.getOr("nope", "x"), "x");
  assert.deepEqual(cfg.list("allow"), ["push", "release", "ping"]);
  assert.deepEqual(cfg.list("nope"), []);
  assert.equal(cfg.int("min"), 3);
  assert.equal(cfg.int("neg"), -2);
  assert.equal(cfg.int("nope", 7), 7);
  assert.equal(cfg.number("ratio"), 0.5);
  assert.equal(cfg.bool("on"), true);
  assert.equal(cfg.bool("off"), false);
  assert.equal(cfg.bool("nope", true), true);
  assert.throws(() => cfg.int("nope"), { message: 'config "nope" is required (an integer)' });
  assert.throws(() => cfg.int("bad"), { message: 'config "bad" must be an integer, got "1.5"' });
  assert.throws(() => cfg.number("allow"), /config "allow" must be a number/);
  assert.throws(() => cfg.bool("min"), { message: 'config "min" must be a boolean (true/false, yes/no, on/off, 1/0), got "3"' });
  assert.deepEqual(new Config([["k", "v"]]).pairs, [["k", "v"]]);
});

test("log: goes to the sink", () => {
  const lines = [];
  setLogSink((level, msg) => lines.push(`${level}:${msg}`));
  log.info("hi");
  log.warn({ a: 1 });
  log.error(new TypeError("x"));
  setLogSink((level, message) => console.error(`[${level}] ${message}`));
  assert.deepEqual(lines, ["info:hi", 'warn:{"a":1}', "error:TypeError: x"]);
});

const wire = {
  id: "evt_1", source: "github", eventType: "push", receivedAt: 1700000000000,
  headers: [["content-type", "application/json"]], body: enc('{"n":5}'),
};

test("wire: an unchanged event goes back as it came", () => {
  const out = callHandler((ev) => Outcome.keep(ev), wire, []);
  assert.deepEqual(out, { tag: "emit", val: [{ event: wire, targets: [] }] });
  assert.deepEqual(callHandler(() => Outcome.drop("no"), wire, []), { tag: "drop", val: "no" });
  const ev = fromWire(wire);
  assert.deepEqual([ev.type, ev.receivedAt, ev.json()], ["push", 1700000000000, { n: 5 }]);
  assert.deepEqual(toWire(Outcome.route(ev, ["slack"])).val[0].targets, ["slack"]);
});

test("wire: config reaches the handler", () => {
  const out = callHandler((ev, cfg) => (ev.json().n < cfg.int("min") ? Outcome.drop("low") : Outcome.keep(ev)), wire, [["min", "6"]]);
  assert.deepEqual(out, { tag: "drop", val: "low" });
});

const failure = (handler) => {
  try {
    callHandler(handler, wire, []);
  } catch (e) {
    assert.equal(typeof e, "string");
    return e;
  }
  assert.fail("expected a failure");
};

test("wire: errors are one readable string", () => {
  assert.match(failure(() => undefined.x), /^TypeError: .* \(at test\/sdk\.test\.js:\d+:\d+\)$/);
  assert.equal(failure(() => { throw "plain"; }), "plain");
  assert.equal(failure(() => { throw 42; }), "uncaught exception: 42");
  assert.match(failure(() => undefined), /^TypeError: handle must return an Outcome .*got undefined$/);
  assert.match(failure((ev) => ev), /got an Event \(push\) \(did you mean Outcome.keep\(ev\)\?\)$/);
  assert.match(failure(async (ev) => Outcome.keep(ev)), /got a Promise \(handle must not be async/);
  assert.match(failure((ev) => ((ev.body = { a: 1 }), Outcome.keep(ev))), /output 0.body must be a Uint8Array or a string/);
  assert.match(failure((ev) => ((ev.receivedAt = -1), Outcome.keep(ev))), /output 0.receivedAt must be a whole number/);
  assert.match(failure((ev) => Outcome.emit([{ event: ev, targets: [1] }])), /^TypeError: output 0: target names must be strings, got 1$/);
  assert.match(failure((ev, cfg) => cfg.int("min")), /^Error: config "min" is required \(an integer\) \(at test\/sdk\.test\.js/);
});

test("formatError: non-errors and errors without a stack", () => {
  const e = new RangeError("r");
  e.stack = undefined;
  assert.equal(formatError(e), "RangeError: r");
  assert.equal(formatError(null), "uncaught exception: null");
  assert.equal(formatError({ a: 1 }), 'uncaught exception: {"a":1}');
});

test("utf8 polyfill matches the platform's encoder and decoder", () => {
  const E = new utf8.TextEncoder();
  const D = new utf8.TextDecoder();
  const strings = ["", "abc", "héllo ✓ 🎉", "\u0000\u007f\u0080\u07ff\u0800\uffff", "\ud83c", "a\udc00b", "\ud83c\udf89\ud83c", "日本語テキスト"];
  for (const s of strings) {
    assert.deepEqual(E.encode(s), new TextEncoder().encode(s), JSON.stringify(s));
    assert.equal(D.decode(E.encode(s)), new TextDecoder().decode(new TextEncoder().encode(s)));
  }
  // Every 1- and 2-byte sequence, and random longer ones, invalid bytes included.
  const native = new TextDecoder();
  const check = (bytes) => assert.equal(D.decode(bytes), native.decode(bytes), `bytes ${[...bytes]}`);
  for (let a = 0; a < 256; a++) {
    check(new Uint8Array([a]));
    for (let b = 0; b < 256; b++) check(new Uint8Array([a, b]));
  }
  let seed = 1;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) >>> 0) >>> 8) & 0xff;
  const lead = [0x41, 0x7f, 0x80, 0xbf, 0xc2, 0xdf, 0xe0, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff, 0x9f, 0xa0, 0x8f, 0x90];
  for (let k = 0; k < 20000; k++) {
    const bytes = new Uint8Array(1 + (rnd() % 8)).map(() => (rnd() & 1 ? lead[rnd() % lead.length] : rnd()));
    check(bytes);
  }
  const big = "x🎉é".repeat(5000);
  assert.equal(D.decode(E.encode(big)), big);
  assert.equal(D.decode(new Uint8Array([0xef, 0xbb, 0xbf, 0x41])), "A"); // BOM
  assert.equal(new utf8.TextDecoder("utf-8", { ignoreBOM: true }).decode(new Uint8Array([0xef, 0xbb, 0xbf])), "\ufeff");
  assert.throws(() => new utf8.TextDecoder("utf-8", { fatal: true }).decode(new Uint8Array([0xff])), TypeError);
  assert.throws(() => new utf8.TextDecoder("latin1"), RangeError);
  assert.equal(D.decode(new Uint8Array([0x61, 0x62, 0x63]).subarray(1)), "bc");
  assert.equal(D.decode(new Uint8Array([0x61]).buffer), "a");
  assert.equal(D.decode(), "");
});

test("utf8: large texts decode and encode like the engine's, across chunk boundaries", () => {
  const native = { enc: new globalThis.TextEncoder(), dec: new globalThis.TextDecoder() };
  const ours = { enc: new utf8.TextEncoder(), dec: new utf8.TextDecoder() };
  for (let pad = 0; pad < 6; pad++) {
    const text = "x".repeat(8192 - pad) + "é✓🎉".repeat(5000) + "plain ascii ".repeat(2000);
    const bytes = native.enc.encode(text);
    assert.equal(ours.dec.decode(bytes), text);
    assert.deepEqual(ours.enc.encode(text), bytes);
    // Invalid bytes placed on a chunk boundary decode as the engine does.
    const broken = bytes.slice();
    broken[8192 - pad] = 0xff;
    broken[8191 - pad] = 0xe2;
    assert.equal(ours.dec.decode(broken), native.dec.decode(broken));
  }
});
