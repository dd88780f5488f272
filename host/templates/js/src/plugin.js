// The {{name}} wasmhook plugin. It is called once per event, in a fresh
// instance, with the event and this plugin's `config = { ... }` on the route.
import { Outcome, log } from "wasmhook-sdk"; // eslint-disable-line no-unused-vars

/**
 * @param {import("wasmhook-sdk").Event} ev
 * @param {import("wasmhook-sdk").Config} cfg
 * @returns {import("wasmhook-sdk").Outcome}
 */
export function handle(ev, cfg) {
  // Filter: drop what you don't want. E.g. keep only the types in config `allow`:
  //
  //   const allow = cfg.list("allow"); // allow = "push, release"
  //   if (!allow.includes(ev.type)) return Outcome.drop(`type ${ev.type} is not allowed`);
  //
  // Transform: change the body or headers, then keep the event:
  //
  //   const body = ev.json();
  //   body.seen_by = "{{name}}";
  //   ev.setJson(body).setHeader("x-seen-by", "{{name}}");
  //
  // Split or route: Outcome.emit([ev, ev.clone().withJson(other)]),
  // Outcome.route(ev, ["slack"]) (names of targets in the router's config).
  //
  // Anything thrown fails the event on this route, with the error's message
  // recorded; the event stays replayable. log.info(`...`) (or console.log)
  // writes to the router's log.
  return Outcome.keep(ev);
}
