// Types for editor help. The SDK itself is plain JavaScript (index.js).

export type Body = Uint8Array | ArrayBuffer | ArrayBufferView | string | unknown;
export type Headers = Array<[string, string]> | Record<string, string>;

export interface EventInit {
  id?: string;
  source?: string;
  /** The event type, e.g. "push". */
  type?: string;
  receivedAt?: number;
  headers?: Headers;
  /** A string (UTF-8), bytes, or any other value as JSON. */
  body?: Body;
}

export class Event {
  constructor(init?: EventInit);
  id: string;
  source: string;
  type: string;
  /** ms since the Unix epoch. */
  receivedAt: number;
  /** Lower-case names, in the order received. */
  headers: Array<[string, string]>;
  body: Uint8Array;
  header(name: string): string | undefined;
  setHeader(name: string, value: string): this;
  removeHeader(name: string): this;
  withHeader(name: string, value: string): this;
  withBody(body: Body): this;
  withJson(value: unknown): this;
  text(): string;
  json<T = any>(): T;
  setJson(value: unknown): this;
  clone(changes?: EventInit): Event;
}

export interface Output {
  event: Event;
  targets: string[];
}

export class Outcome {
  static keep(ev: Event): Outcome;
  static drop(reason: string): Outcome;
  static emit(events: Iterable<Event | Output>): Outcome;
  static route(ev: Event, targets: string | Iterable<string>): Outcome;
  readonly isDrop: boolean;
  readonly isEmit: boolean;
  readonly dropReason: string | undefined;
  readonly events: Event[];
  readonly outputs: Output[];
  readonly targets: string[];
}

export class Config {
  constructor(pairs?: Iterable<[string, string]>);
  static from(obj?: Record<string, string | number | boolean>): Config;
  readonly pairs: Array<[string, string]>;
  get(key: string): string | undefined;
  getOr(key: string, fallback: string): string;
  list(key: string): string[];
  int(key: string, fallback?: number): number;
  number(key: string, fallback?: number): number;
  bool(key: string, fallback?: boolean): boolean;
}

export const log: Record<"trace" | "debug" | "info" | "warn" | "error", (message: unknown) => void>;

export type Handler = (ev: Event, cfg: Config) => Outcome;
export function formatError(e: unknown): string;
