// UTF-8 TextEncoder / TextDecoder for engines that lack them (QuickJS under jco
// has neither). Follows the WHATWG Encoding spec for UTF-8: lone surrogates
// encode as U+FFFD, and each maximal invalid byte sequence decodes to one U+FFFD
// (or throws with `fatal: true`). Not supported: other encodings, `stream: true`.

export class TextEncoder {
  get encoding() {
    return "utf-8";
  }

  /** @param {string} [input] */
  encode(input = "") {
    const s = String(input);
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
    let i = 0;
    if (!this.ignoreBOM && n >= 3 && bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf) i = 3;
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
