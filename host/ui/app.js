// The wasmhook dashboard: one ES module, no build step, no dependencies.
//
// Everything the sender controls (bodies, headers, ids, plugin output) is
// put on the page as text, never as HTML: `h()` below only ever sets
// `textContent`, and the server's Content-Security-Policy allows no inline
// script or style. The admin token lives in this tab's sessionStorage and
// goes out only as an Authorization header.

const TOKEN_KEY = "wasmhook.admin_token";
const main = document.getElementById("main");
const nav = document.getElementById("nav");
let refresh = null; // the current page's timer, cleared on navigation
// Aborted on every navigation: a page still loading for an earlier one
// (a refresh in flight, the live tail's stream) stops and never renders.
let navigation = new AbortController();

// ---- DOM ------------------------------------------------------------------

/** h("tag.class#id", {attrs, on: {click}}, ...children); strings are text. */
function h(spec, attrs, ...children) {
  const [, tag, rest] = spec.match(/^([a-z0-9]+)(.*)$/);
  const el = document.createElement(tag);
  for (const part of rest.match(/[.#][^.#]+/g) || []) {
    if (part[0] === ".") el.classList.add(part.slice(1));
    else el.id = part.slice(1);
  }
  if (attrs !== null && attrs !== undefined && (typeof attrs !== "object" || attrs instanceof Node || Array.isArray(attrs))) {
    children.unshift(attrs);
    attrs = null;
  }
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "on") for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
    else if (v !== null && v !== undefined && v !== false) el.setAttribute(k, v === true ? "" : String(v));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children.flat(Infinity)) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

function svg(tag, attrs, ...children) {
  const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
  append(el, children);
  return el;
}

function fill(el, ...children) {
  el.replaceChildren();
  append(el, children);
}

const show = (...children) => fill(main, ...children);

// ---- Formatting -------------------------------------------------------------

const time = (ms) => (ms ? new Date(ms).toLocaleString() : "");
const ms = (v) => (v === null || v === undefined ? "–" : `${v < 10 ? v.toFixed(2) : Math.round(v)} ms`);
const pct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)} %`);
const state = (s) => h("span.state." + String(s).replace(/[^a-z_]/g, ""), s);
const short = (s, n = 12) => (s && s.length > n ? s.slice(0, n) + "…" : s || "");
const link = (href, text) => h("a", { href }, text);
// Ids are unique per source: a link names both.
const eventLink = (id, source) => link("#/events/" + encodeURIComponent(id) + query({ source }), id);

function pretty(text) {
  if (text === null || text === undefined) return "";
  try {
    return JSON.stringify(JSON.parse(text), null, 2);
  } catch {
    return text;
  }
}

// ---- The API ----------------------------------------------------------------

class SignedOut extends Error {}

async function api(path, options = {}) {
  const token = options.token || sessionStorage.getItem(TOKEN_KEY);
  if (!token) throw new SignedOut();
  const headers = { Authorization: "Bearer " + token };
  if (options.body !== undefined) headers["Content-Type"] = "application/json";
  const res = await fetch(path, {
    method: options.method || "GET",
    headers,
    body: options.body === undefined ? undefined : JSON.stringify(options.body),
    signal: navigation.signal,
  });
  if (res.status === 401) {
    sessionStorage.removeItem(TOKEN_KEY);
    throw new SignedOut();
  }
  if (options.stream && res.ok) return res;
  const data = await res.json().catch(() => ({}));
  if (!res.ok) throw new Error(data.error || `${res.status} ${res.statusText}`);
  return data;
}

function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? "?" + s : "";
}

function flash(text, bad) {
  const el = h("div.flash#flash" + (bad ? ".bad" : ""), text);
  document.getElementById("flash")?.remove();
  main.prepend(el);
}

// ---- Pages --------------------------------------------------------------------

function signIn(message) {
  nav.hidden = true;
  const input = h("input#token", { type: "password", autocomplete: "current-password", required: true });
  show(
    h("div.signin",
      h("h1", "Sign in"),
      h("p.muted", "Paste the router's admin token (server.admin_token). It stays in this tab only."),
      message ? h("div.flash.bad#signin-error", message) : null,
      h("form#signin", {
        on: {
          submit: async (e) => {
            e.preventDefault();
            const token = input.value.trim();
            try {
              // Kept only once the router has taken it.
              await api("/api/overview", { token });
              sessionStorage.setItem(TOKEN_KEY, token);
              route();
            } catch (err) {
              signIn(err instanceof SignedOut ? "That token is not the admin token." : String(err.message));
            }
          },
        },
      },
        h("label", "Admin token", input),
        h("button.primary#signin-submit", { type: "submit" }, "Sign in"),
      ),
    ),
  );
  input.focus();
}

async function overview() {
  const data = await api("/api/overview");
  const s = data.series;
  const lastMinute = (xs) => xs.slice(-60).reduce((a, b) => a + b, 0) / 60;
  const q = data.queue;
  show(
    h("h1", "Overview"),
    h("div.cards",
      card("Events in /s (last min)", lastMinute(s.events_in).toFixed(1)),
      card("Delivered /s (last min)", lastMinute(s.delivered).toFixed(1)),
      card("Failure rate (last hour)", pct(data.last_hour.failure_rate)),
      card("Awaiting routes", q.awaiting_pipeline),
      card("Pending deliveries", q.pending_deliveries),
      card("In flight", q.in_flight),
      card("Dead", q.dead, "#/deliveries?state=dead"),
      card("Failed routes", q.failed_routes, "#/events?state=failed"),
    ),
    h("h2", "Last hour, per second"),
    h("div.legend", h("span.in", "■ events in"), h("span.out", "■ delivered"), h("span.failed", "■ failed attempts")),
    chart(s),
    h("div.grid2",
      h("div",
        h("h2", "Backlog per target"),
        table(["Target", "Backlog", "In flight", "Dead"], data.targets.map((t) => [
          link("#/deliveries" + query({ target: t.target }), t.target), num(t.backlog), num(t.in_flight), num(t.dead),
        ])),
      ),
      h("div",
        h("h2", "Plugins"),
        table(["Plugin", "Calls", "Errors", "p99"], data.plugins.map((p) => [
          p.name, num(p.calls), num(p.errors), num(ms(p.p99_ms)),
        ])),
      ),
    ),
  );
  refresh = setTimeout(() => route(), 2000);
}

function card(label, value, href) {
  const body = [h("div.muted", label), h("div.n", value)];
  return href ? h("a.card", { href }, body) : h("div.card", body);
}

const num = (v) => h("span.num", v);

function table(head, rows, id) {
  const attrs = id ? { id } : {};
  return h("table", attrs,
    h("thead", h("tr", head.map((c) => h("th", c)))),
    h("tbody", rows.length ? rows.map((r) => h("tr", r.map((c) => h("td", c))))
      : h("tr", h("td.muted", { colspan: head.length }, "Nothing here."))),
  );
}

/** Per-second counts, averaged over 10 s, as an SVG line chart. */
function chart(s) {
  const W = 720, H = 200, P = 28, step = 10;
  const bucket = (xs) => {
    const out = [];
    for (let i = 0; i < xs.length; i += step) out.push(xs.slice(i, i + step).reduce((a, b) => a + b, 0) / step);
    return out;
  };
  const lines = [["in", bucket(s.events_in)], ["out", bucket(s.delivered)], ["failed", bucket(s.failed)]];
  const max = Math.max(1, ...lines.flatMap(([, xs]) => xs));
  const x = (i, n) => P + (i * (W - 2 * P)) / Math.max(1, n - 1);
  const y = (v) => H - P - (v * (H - 2 * P)) / max;
  return svg("svg", { class: "chart", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", id: "chart" },
    svg("text", { x: 4, y: P - 8 }, `${max.toFixed(1)}/s`),
    svg("text", { x: 4, y: H - 8 }, "-60 min"),
    svg("text", { x: W - 40, y: H - 8 }, "now"),
    svg("line", { x1: P, y1: H - P, x2: W - P, y2: H - P, stroke: "#e4e7ec" }),
    lines.map(([cls, xs]) =>
      svg("polyline", { class: cls, points: xs.map((v, i) => `${x(i, xs.length).toFixed(1)},${y(v).toFixed(1)}`).join(" ") })),
  );
}

async function events(params) {
  const data = await api("/api/events" + query({ ...params, limit: 50 }));
  const field = (name, label, attrs = {}) => h("label", label, h("input", { name, value: params[name] || "", ...attrs }));
  const stateSelect = h("select", { name: "state" },
    ["", "received", "processed", "failed"].map((v) => h("option", { value: v, selected: params.state === v }, v || "any")));
  const search = h("input#search-id", { name: "id", placeholder: "evt_…" });
  show(
    h("h1", "Events"),
    h("form.filters#event-filters", {
      on: {
        submit: (e) => {
          e.preventDefault();
          const f = new FormData(e.target);
          const when = f.get("before") ? Date.parse(f.get("before")) : "";
          location.hash = "#/events" + query({
            source: f.get("source"), type: f.get("type"), state: f.get("state"), before: isNaN(when) ? "" : when,
          });
        },
      },
    },
      field("source", "Source"), field("type", "Event type"), h("label", "State", stateSelect),
      field("before", "Received before", { type: "datetime-local", value: "" }),
      h("button.primary", { type: "submit" }, "Filter"),
    ),
    h("form.filters#event-search", {
      on: {
        submit: (e) => {
          e.preventDefault();
          if (search.value.trim()) location.hash = "#/events/" + encodeURIComponent(search.value.trim());
        },
      },
    }, h("label", "Find by id", search), h("button", { type: "submit" }, "Open")),
    table(["Received", "Id", "Source", "Type", "State", "Deliveries", "Failed routes"],
      data.events.map((e) => [
        time(e.received_at), eventLink(e.id, e.source), e.source, e.event_type || h("span.muted", "(none)"), state(e.state),
        e.deliveries ? `${e.delivered}/${e.deliveries} delivered` + (e.dead ? `, ${e.dead} dead` : "") : h("span.muted", "none"),
        e.failed_routes ? state("failed") : "",
      ]), "events-table"),
    h("p", params.before ? [link("#/events" + query({ ...params, before: "" }), "← Newest"), " "] : null,
      data.next ? link("#/events" + query({ ...params, before: data.next }), "Older →") : null),
  );
}

async function eventDetail(id, source) {
  const e = await api("/api/events/" + encodeURIComponent(id) + query({ source }));
  const failedRoutes = new Set(e.failed_routes.map((f) => f.route));
  const body = e.body !== null && e.body !== undefined ? pretty(e.body) : `(binary, base64) ${e.body_base64}`;
  show(
    h("h1", "Event ", h("code#event-id", e.id)),
    h("p", state(e.state), " from ", h("b", e.source), " · type ", h("code", e.event_type || "(none)"),
      " · received ", time(e.received_at), " · ", link("#/plugins" + query({ event: e.id, source: e.source }), "Try it with a plugin")),
    h("h2", "What each route did"),
    table(["Route", "Outcome", "Detail", ""], e.routes.map((r) => [
      r.route, state(r.outcome), routeDetail(r),
      r.outcome === "failed" && failedRoutes.has(r.route)
        ? h("button.rerun", { on: { click: () => rerun(e.id) } }, "Re-run") : "",
    ]), "routes-table"),
    h("h2", "Deliveries"),
    e.deliveries.length ? e.deliveries.map(delivery) : h("p.muted", "No deliveries."),
    h("h2", "Headers"),
    table(["Name", "Value"], e.headers.map(([k, v]) => [h("code", k), h("code", v)]), "headers-table"),
    h("h2", "Body"),
    h("pre#event-body", body),
  );
}

function routeDetail(r) {
  if (r.outcome === "dropped") return [`dropped by plugin ${r.plugin}: `, h("span.reason", r.reason)];
  if (r.outcome === "failed") return [r.plugin ? `plugin ${r.plugin}: ` : "", h("span.reason", r.error),
    r.waiting_for ? ` (waiting for ${r.waiting_for})` : ""];
  const drops = (r.dropped || []).map((d) => ` · ${d.count} dropped by ${d.plugin}: ${d.reason}`);
  return [`${r.outputs} output(s) to ${r.targets.join(", ") || "no target"}`, drops];
}

function delivery(d) {
  return h("div.delivery", { "data-delivery": d.id },
    h("p", h("code", d.id), " → ", h("b", d.target), " ", h("span.delivery-state", state(d.state)),
      ` · ${d.attempts} attempt(s)`, d.next_attempt_at ? ` · next at ${time(d.next_attempt_at)}` : "",
      d.state !== "in_flight" && d.state !== "delivered"
        ? [" ", h("button.retry", { on: { click: () => retry(d.id) } }, "Retry")] : ""),
    h("ol.timeline", (d.attempt_log || []).map((a) => h("li",
      time(a.started_at), " · ", a.status ? state(a.status) : state("error"), ` · ${a.duration_ms} ms`,
      a.error ? [" · ", a.error] : "",
      a.response ? [" · ", h("code", short(a.response, 200))] : ""))),
  );
}

async function retry(id) {
  try {
    await api(`/api/deliveries/${encodeURIComponent(id)}/retry`, { method: "POST" });
    flash(`Delivery ${id} is due again.`);
    // Give the attempt a moment, then show where it stands.
    await new Promise((done) => setTimeout(done, 700));
    await route();
    flash(`Delivery ${id} is due again.`);
  } catch (err) {
    flash(err.message, true);
  }
}

async function rerun(id) {
  try {
    const r = await api(`/api/events/${encodeURIComponent(id)}/rerun`, { method: "POST" });
    const bad = r.routes.filter((x) => !x.ok);
    await route();
    flash(bad.length ? `Re-run: ${bad.length} route(s) failed again: ${bad[0].reason}` : "Re-run: every route ran.", bad.length > 0);
  } catch (err) {
    flash(err.message, true);
  }
}

async function deliveries(params) {
  const data = await api("/api/deliveries" + query({ state: params.state, target: params.target, after: params.after, limit: 50 }));
  const config = await api("/api/targets");
  const targetSelect = h("select", { name: "target" }, h("option", { value: "" }, "any"),
    config.targets.map((t) => h("option", { value: t.name, selected: params.target === t.name }, t.name)));
  const stateSelect = h("select", { name: "state" },
    ["", "pending", "in_flight", "retrying", "delivered", "dead"].map((v) =>
      h("option", { value: v, selected: params.state === v }, v || "any")));
  show(
    h("h1", "Deliveries"),
    h("form.filters#delivery-filters", {
      on: {
        submit: (e) => {
          e.preventDefault();
          const f = new FormData(e.target);
          location.hash = "#/deliveries" + query({ state: f.get("state"), target: f.get("target") });
        },
      },
    }, h("label", "State", stateSelect), h("label", "Target", targetSelect), h("button.primary", { type: "submit" }, "Filter"),
      params.target ? h("button#replay", { type: "button", on: { click: () => replay(params.target) } },
        `Replay ${params.target}'s dead deliveries`) : null),
    table(["Id", "Event", "Target", "Route", "State", "Attempts", "Last error", ""], data.deliveries.map((d) => [
      h("code", short(d.id, 20)), eventLink(d.event_id, d.source), d.target, d.route, state(d.state), num(d.attempts),
      d.last_error || "",
      d.state !== "in_flight" && d.state !== "delivered" ? h("button.retry", { on: { click: () => retry(d.id) } }, "Retry") : "",
    ]), "deliveries-table"),
    h("p", params.after ? [link("#/deliveries" + query({ ...params, after: "" }), "← First page"), " "] : null,
      data.next ? link("#/deliveries" + query({ ...params, after: data.next }), "Next →") : null),
  );
}

async function replay(target) {
  try {
    const r = await api(`/api/targets/${encodeURIComponent(target)}/replay`, { method: "POST" });
    await route();
    flash(`Replayed ${r.requeued} dead deliveries of ${target}.`);
  } catch (err) {
    flash(err.message, true);
  }
}

const SAMPLE_EVENT = { type: "push", headers: { "content-type": "application/json" }, body: { hello: "world" } };

async function plugins(params) {
  const data = await api("/api/plugins");
  let sample = SAMPLE_EVENT;
  if (params.event) {
    const e = await api("/api/events/" + encodeURIComponent(params.event) + query({ source: params.source })).catch(() => null);
    if (e) {
      sample = { id: e.id, source: e.source, type: e.event_type, headers: Object.fromEntries(e.headers) };
      if (e.body !== null && e.body !== undefined) {
        try { sample.body = JSON.parse(e.body); } catch { sample.body = e.body; }
      } else sample.body_base64 = e.body_base64;
    }
  }
  const loaded = data.plugins.filter((p) => p.version);
  const pick = h("select#try-plugin", loaded.map((p) => h("option", { value: p.name, selected: params.plugin === p.name }, p.name)));
  const eventText = h("textarea#try-event", { rows: 12 }, JSON.stringify(sample, null, 2));
  const configText = h("textarea#try-config", { rows: 4, placeholder: '{"allow": "push"}' }, params.config || "");
  const output = h("div#try-output");
  show(
    h("h1", "Plugins"),
    table(["Name", "Version", "Language", "Loaded", "From cache", "Calls", "Errors", "p50", "p99", "Last error"],
      data.plugins.map((p) => [
        h("b", p.name), h("code", short(p.version, 12)), p.language || "", time(p.loaded_at), p.from_cache ? "yes" : "no",
        num(p.calls), num(p.errors), num(ms(p.p50_ms)), num(ms(p.p99_ms)),
        p.last_error ? h("span.state.error", p.last_error) : "",
      ]), "plugins-table"),
    h("h2", "Try it"),
    h("p.muted", "Runs the loaded plugin in the router's sandbox, with its limits, on this event. Nothing is stored or delivered."),
    h("div.grid2",
      h("div",
        h("label", "Plugin", pick),
        h("label", "Event (JSON: type, headers, body …)", eventText),
        h("label", "Config (JSON object)", configText),
        loaded.length ? h("p", h("button.primary#try-run", { on: { click: () => tryRun(pick.value, eventText.value, configText.value, output) } }, "Run"))
          : h("p.muted", "No plugin is loaded: put a .wasm file in the router's plugins folder."),
      ),
      output,
    ),
  );
}

async function tryRun(name, eventText, configText, output) {
  let event, config;
  try {
    event = JSON.parse(eventText);
    config = configText.trim() ? JSON.parse(configText) : {};
  } catch (err) {
    fill(output, h("div.flash.bad", "Not valid JSON: " + err.message));
    return;
  }
  try {
    const r = await api(`/api/plugins/${encodeURIComponent(name)}/run`, { method: "POST", body: { event, config } });
    const result = r.outcome === "drop" ? ["dropped: ", h("span.reason", r.reason)]
      : r.outcome === "error" ? [`${r.error.kind}: `, h("span.reason", r.error.message)]
      : `${r.emit.length} event(s) emitted`;
    fill(output, 
      h("p#try-outcome", state(r.outcome), " ", result, h("span.muted", ` · ${r.took_ms.toFixed(2)} ms`)),
      r.outcome === "emit" ? h("pre#try-emitted", JSON.stringify(r.emit, null, 2)) : null,
      h("h2", "Logs"),
      r.logs.length || r.printed ? h("pre#try-logs", r.logs.map((l) => `[${l.level}] ${l.message}`).join("\n"), r.printed ? "\n" + r.printed : "")
        : h("p.muted", "It logged nothing."),
    );
  } catch (err) {
    fill(output, h("div.flash.bad#try-error", err.message));
  }
}

async function targets() {
  const data = await api("/api/targets");
  // Why it is paused, or when the open circuit probes next.
  const why = (t) => t.paused ? t.paused.reason
    : t.next_probe_at ? `${t.failures} failures in a row; next probe ${time(t.next_probe_at)}` : "";
  show(
    h("h1", "Targets"),
    table(["Name", "URL", "State", "Success", "p50", "p99", "In flight", "Backlog", "Dead", ""],
      data.targets.map((t) => [
        link("#/deliveries" + query({ target: t.name }), t.name), h("code", t.url),
        h("span", { title: why(t) }, state(t.state)),
        num(pct(t.success_rate)), num(ms(t.p50_ms)), num(ms(t.p99_ms)),
        num(`${t.in_flight}/${t.max_in_flight}`), num(t.backlog),
        t.dead ? link("#/deliveries" + query({ state: "dead", target: t.name }), String(t.dead)) : num(0),
        t.state === "active"
          ? h("button.pause", { on: { click: () => control(t.name, "pause") } }, "Pause")
          : h("button.resume", { on: { click: () => control(t.name, "resume") } }, "Resume"),
      ]), "targets-table"),
  );
  refresh = setTimeout(() => route(), 3000);
}

async function control(target, action) {
  try {
    const t = await api(`/api/targets/${encodeURIComponent(target)}/${action}`, { method: "POST" });
    await route();
    flash(`${target} is ${t.state}.`);
  } catch (err) {
    flash(err.message, true);
  }
}

async function liveTail() {
  const rows = h("tbody");
  const status = h("span.muted#live-status", "connecting…");
  show(
    h("h1", "Live tail"),
    h("p", status),
    h("table#live-table", h("thead", h("tr", ["Received", "Event", "Source", "Type"].map((c) => h("th", c)))), rows),
  );
  const res = await api("/api/stream", { stream: true });
  status.textContent = "watching: new events appear at the top";
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const message = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const kind = (message.match(/^event: (.*)$/m) || [])[1];
      const data = message.split("\n").filter((l) => l.startsWith("data: ")).map((l) => l.slice(6)).join("\n");
      if (kind === "event") {
        const e = JSON.parse(data);
        rows.prepend(h("tr", [time(e.received_at), eventLink(e.id, e.source), e.source, e.event_type].map((c) => h("td", c))));
      } else if (kind === "attempt") {
        const a = JSON.parse(data);
        rows.prepend(h("tr.attempt", h("td", "→ " + a.target), h("td", eventLink(a.event_id, a.source)),
          h("td", state(a.outcome), ` attempt ${a.attempt}`), h("td", `${a.status ?? "no answer"} · ${a.duration_ms} ms`, a.error ? ` · ${a.error}` : "")));
      } else if (kind === "lagged") {
        rows.prepend(h("tr", h("td.muted", { colspan: 4 }, `… ${JSON.parse(data).missed} events went by too fast to show`)));
      }
      while (rows.children.length > 200) rows.lastChild.remove();
    }
  }
  status.textContent = "the router closed the stream";
}

// ---- Routing ------------------------------------------------------------------

async function route() {
  clearTimeout(refresh);
  navigation.abort();
  navigation = new AbortController();
  if (!sessionStorage.getItem(TOKEN_KEY)) return signIn();
  nav.hidden = false;
  try {
    const [path, search] = location.hash.slice(1).split("?");
    const params = Object.fromEntries(new URLSearchParams(search || ""));
    const parts = (path || "/").split("/").filter(Boolean).map(decodeURIComponent);
    const page = parts[0] || "overview";
    for (const a of nav.querySelectorAll("a")) a.classList.toggle("current", a.dataset.page === page);
    if (page === "overview") await overview();
    else if (page === "events" && parts[1]) await eventDetail(parts.slice(1).join("/"), params.source);
    else if (page === "events") await events(params);
    else if (page === "deliveries") await deliveries(params);
    else if (page === "plugins") await plugins(params);
    else if (page === "targets") await targets();
    else if (page === "live") await liveTail();
    else show(h("h1", "Not found"), h("p", link("#/", "Overview")));
  } catch (err) {
    if (err instanceof SignedOut) return signIn("Signed out: the token was refused.");
    if (err.name === "AbortError") return;
    show(h("h1", "That did not work"), h("div.flash.bad#page-error", err.message));
  }
}

document.getElementById("sign-out").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  location.hash = "#/";
  route();
});
window.addEventListener("hashchange", () => route());
route();
