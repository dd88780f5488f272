// Test variant of the JS template: drop events whose n is below `min`, tag
// the rest with this version. The test suite writes it over a fresh
// scaffold's src/plugin.js, with VERSION filled in.
import { Outcome } from "wasmhook-sdk";

export function handle(ev, cfg) {
  const n = ev.json().n;
  if (typeof n !== "number") throw new TypeError("every event needs a numeric n");
  const min = cfg.int("min", 0);
  if (n < min) return Outcome.drop(`n=${n} is below min=${min}`);
  return Outcome.keep(ev.withHeader("x-plugin-version", "VERSION"));
}
