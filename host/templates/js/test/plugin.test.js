// `npm test` runs the plugin's logic natively, without WebAssembly.
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";
import { Config, Event } from "wasmhook-sdk";
import { handle } from "../src/plugin.js";

const sample = () =>
  new Event(JSON.parse(readFileSync(new URL("../events/sample.json", import.meta.url), "utf8")));

test("keeps every event unchanged", () => {
  const ev = sample();
  const body = ev.body.slice();
  const out = handle(ev, Config.from({}));
  assert.ok(out.isEmit);
  assert.equal(out.events.length, 1);
  assert.equal(out.events[0].type, "push");
  assert.deepEqual(out.events[0].body, body);
  assert.deepEqual(out.targets, []);
});

test("builds test events by hand too", () => {
  const ev = new Event({ type: "star", body: { stars: 3 } }).withHeader("X-GitHub-Event", "star");
  const out = handle(ev, Config.from({}));
  assert.equal(out.events[0].json().stars, 3);
  assert.equal(out.events[0].header("x-github-event"), "star");
});
