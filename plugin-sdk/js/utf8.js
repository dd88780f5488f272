// UTF-8 TextEncoder / TextDecoder for engines that lack them (QuickJS under jco
// has neither). Follows the WHATWG Encoding spec for UTF-8: lone surrogates
// encode as U+FFFD, and each maximal invalid byte sequence decodes to one U+FFFD
// (or throws with `fatal: true`). Not supported: other encodings, `stream: true`.

// The host's UTF-8 codec (the WIT's utf8-decode and utf8-encode), once
// component.js installs it: an interpreter takes ~100 ms per MiB for any
// byte-at-a-time loop, the host well under one. Until then (native tests,
// build-time module code) the JavaScript below does the work.
let native = null;

/** @internal `{ ready(): boolean, decode(bytes): string, encode(text): Uint8Array }` */
export function useNativeCodec(codec) {
  native = codec;
}

export class TextEncoder {
  get encoding() {
    return "utf-8";
  }

  /** @param {string} [input] */
  encode(input = "") {
    const s = String(input);
    if (native && native.ready()) {
      // Lone surrogates become U+FFFD, as the spec's encoder makes them.
      return native.encode(typeof s.toWellFormed === "function" ? s.toWellFormed() : s);
    }
    // The engine's own UTF-8 encoder (encodeURIComponent) makes a
    // byte-per-char string; copying that is the only per-byte work left.
    // It refuses lone surrogates: those strings take the slow path below.
    let bin;
    try {
      bin = unescape(encodeURIComponent(s));
    } catch {
      return this.#encodeChars(s);
    }
    const out = new Uint8Array(bin.length);
    for (let k = 0; k < bin.length; k++) out[k] = bin.charCodeAt(k);
    return out;
  }

  /** Char by char, lone surrogates becoming U+FFFD. */
  #encodeChars(s) {
    const out = new Uint8Array(s.length * 3); // a UTF-16 unit never needs more
    let n = 0;
    for (let i = 0; i < s.length; i++) {
      let c = s.charCodeAt(i);
      if (c < 0x80) {
        out[n++] = c;
      } else if (c < 0x800) {
        out[n++] = 0xc0 | (c >> 6);
        out[n++] = 0x80 | (c & 0x3f);
      } else {
        if (c >= 0xd800 && c <= 0xdfff) {
          const d = s.charCodeAt(i + 1);
          if (c <= 0xdbff && d >= 0xdc00 && d <= 0xdfff) {
            c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
            i++;
            out[n++] = 0xf0 | (c >> 18);
            out[n++] = 0x80 | ((c >> 12) & 0x3f);
            out[n++] = 0x80 | ((c >> 6) & 0x3f);
            out[n++] = 0x80 | (c & 0x3f);
            continue;
          }
          c = 0xfffd; // lone surrogate
        }
        out[n++] = 0xe0 | (c >> 12);
        out[n++] = 0x80 | ((c >> 6) & 0x3f);
        out[n++] = 0x80 | (c & 0x3f);
      }
    }
    return out.slice(0, n);
  }
}

/** Bytes decoded per step; a multiple of nothing in particular. */
const CHUNK = 8192;
const HIGH = /[\x80-\xff]/;

export class TextDecoder {
  /** @param {string} [label] @param {{fatal?: boolean, ignoreBOM?: boolean}} [options] */
  constructor(label = "utf-8", options = {}) {
    const l = String(label).trim().toLowerCase();
    if (l !== "utf-8" && l !== "utf8" && l !== "unicode-1-1-utf-8") {
      throw new RangeError(`TextDecoder: only utf-8 is available here, not ${JSON.stringify(label)}`);
    }
    this.fatal = !!options.fatal;
    this.ignoreBOM = !!options.ignoreBOM;
  }

  get encoding() {
    return "utf-8";
  }

  /** @param {ArrayBuffer | ArrayBufferView} [input] */
  decode(input, options) {
    if (options && options.stream) {
      throw new TypeError("TextDecoder: { stream: true } is not supported here");
    }
    const bytes =
      input === undefined
        ? new Uint8Array(0)
        : ArrayBuffer.isView(input)
          ? new Uint8Array(input.buffer, input.byteOffset, input.byteLength)
          : new Uint8Array(input);
    const n = bytes.length;
    if (native && native.ready() && !this.fatal) {
      const text = native.decode(bytes);
      return !this.ignoreBOM && text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
    }
    let i = 0;
    if (!this.ignoreBOM && n >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) i = 3;
    // Chunk by chunk, in native code where possible: an interpreter
    // (QuickJS) takes a second for a per-byte loop over a megabyte. Each
    // chunk becomes a byte-per-char string; without bytes >= 0x80 that is
    // the text, else the engine's own UTF-8 decoder (decodeURIComponent, as
    // strict as the spec) reads it, and only a chunk holding invalid UTF-8
    // goes through the byte-by-byte decoder below.
    // Parts joined once at the end: QuickJS copies a string on every `+=`.
    const parts = [];
    while (i < n) {
      let end = Math.min(n, i + CHUNK);
      // Never cut a character in two: end before the lead byte of one
      // the chunk would split.
      if (end < n && (bytes[end] & 0xc0) === 0x80) {
        let k = end - 1;
        while (k > i && end - k < 4 && (bytes[k] & 0xc0) === 0x80) k--;
        if (k > i) end = k;
      }
      const chunk = bytes.subarray(i, end);
      const latin1 = String.fromCharCode.apply(null, chunk);
      if (!HIGH.test(latin1)) {
        parts.push(latin1);
      } else {
        let text;
        try {
          text = decodeURIComponent(escape(latin1));
        } catch {
          text = this.#decodeBytes(chunk);
        }
        parts.push(text);
      }
      i = end;
    }
    return parts.join("");
  }

  /** The byte-by-byte decoder, for chunks holding invalid UTF-8. */
  #decodeBytes(bytes) {
    const n = bytes.length;
    let i = 0;
    let out = "";
    const units = [];
    const bad = () => {
      if (this.fatal) throw new TypeError("TextDecoder: the data is not valid UTF-8");
      units.push(0xfffd);
    };
    while (i < n) {
      const b = bytes[i];
      if (b < 0x80) {
        // A run of ASCII becomes a string in one call: per-byte pushes cost
        // most of a call in an interpreter (QuickJS).
        let j = i + 1;
        while (j < n && bytes[j] < 0x80 && j - i < 8192) j++;
        if (units.length > 0) {
          out += String.fromCharCode.apply(null, units);
          units.length = 0;
        }
        out += String.fromCharCode.apply(null, bytes.subarray(i, j));
        i = j;
      } else {
        let need, cp;
        let lo = 0x80;
        let hi = 0xbf;
        if (b >= 0xc2 && b <= 0xdf) {
          need = 1;
          cp = b & 0x1f;
        } else if (b >= 0xe0 && b <= 0xef) {
          need = 2;
          cp = b & 0x0f;
          if (b === 0xe0) lo = 0xa0; // overlong
          if (b === 0xed) hi = 0x9f; // surrogates
        } else if (b >= 0xf0 && b <= 0xf4) {
          need = 3;
          cp = b & 0x07;
          if (b === 0xf0) lo = 0x90; // overlong
          if (b === 0xf4) hi = 0x8f; // above U+10FFFF
        } else {
          bad();
          i++;
          continue;
        }
        let j = i + 1;
        for (; need > 0; need--, j++) {
          const c = bytes[j];
          if (j >= n || c < lo || c > hi) break;
          cp = (cp << 6) | (c & 0x3f);
          lo = 0x80;
          hi = 0xbf;
        }
        i = j; // on a bad byte, it is read again as the start of the next character
        if (need > 0) {
          bad();
        } else if (cp >= 0x10000) {
          cp -= 0x10000;
          units.push(0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
        } else {
          units.push(cp);
        }
      }
      if (units.length >= 8192) {
        out += String.fromCharCode.apply(null, units);
        units.length = 0;
      }
    }
    return out + String.fromCharCode.apply(null, units);
  }
}

/** Put TextEncoder/TextDecoder on `globalThis` where the engine has none. */
export function installTextCoding(g = globalThis) {
  if (typeof g.TextEncoder !== "function") g.TextEncoder = TextEncoder;
  if (typeof g.TextDecoder !== "function") g.TextDecoder = TextDecoder;
}
