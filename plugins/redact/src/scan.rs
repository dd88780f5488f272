//! Removing one JSON pointer from a JSON text in a single pass, without
//! building a tree: the text is checked as it is read (so a body that is
//! not JSON still fails, however the pointer reads), and what is kept is
//! copied byte for byte. A value off the pointer's path costs a scan.
//!
//! Rules, the same as parsing into a `serde_json::Value` and removing from
//! it, except where said:
//! - keys are compared decoded, so `"em\u0061il"` is `email`;
//! - a key that occurs twice in one object is removed (or descended into)
//!   every time, where a tree would have kept only the last;
//! - nesting deeper than [`MAX_DEPTH`] fails, as in `serde_json` (so a
//!   body a consumer using it could not read is not passed on);
//! - a number is checked against JSON's grammar only: `1e400` passes
//!   (`serde_json` refuses what does not fit an `f64`);
//! - what is kept keeps its spacing, key order and number spelling.

use std::ops::Range;

/// Deepest nesting of arrays and objects accepted, as in `serde_json`.
pub const MAX_DEPTH: usize = 127;

/// Why a text is not JSON, and where.
#[derive(Debug, PartialEq, Eq)]
pub struct SyntaxError {
    pub what: &'static str,
    pub at: usize,
}

impl std::fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at byte {}", self.what, self.at)
    }
}

/// A JSON pointer (RFC 6901) split into its unescaped tokens; `None` for
/// one that cannot point into a body (empty, or not starting with `/`).
pub fn tokens(pointer: &str) -> Option<Vec<String>> {
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

/// Check that `text` is one JSON value, and remove what `path` points at.
/// Returns the text without it, or `None` when the path matched nothing.
pub fn remove(text: &[u8], path: &[String]) -> Result<Option<Vec<u8>>, SyntaxError> {
    let mut s = Scanner {
        text,
        pos: 0,
        cuts: Vec::new(),
    };
    s.ws();
    s.value(Some(path).filter(|p| !p.is_empty()), 0)?;
    s.ws();
    if s.pos != text.len() {
        return Err(s.err("trailing characters"));
    }
    if s.cuts.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::with_capacity(text.len());
    let mut from = 0;
    for cut in &s.cuts {
        out.extend_from_slice(&text[from..cut.start]);
        from = cut.end;
    }
    out.extend_from_slice(&text[from..]);
    Ok(Some(out))
}

/// The array index `token` spells. On the way to the value, as pointers
/// read it (no sign, no leading zero); as the value to remove, any spelling
/// of a number (`01`, `+1`): removing more is the safe side, and the
/// plugin always read it so.
fn index(token: &str, last: bool) -> Option<usize> {
    if !last && token != "0" && token.starts_with(['0', '+']) {
        return None;
    }
    token.parse().ok()
}

struct Scanner<'a> {
    text: &'a [u8],
    pos: usize,
    /// Byte ranges to leave out, in order and apart.
    cuts: Vec<Range<usize>>,
}

impl Scanner<'_> {
    fn err(&self, what: &'static str) -> SyntaxError {
        SyntaxError { what, at: self.pos }
    }

    fn peek(&self) -> Option<u8> {
        self.text.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.peek() {
            self.pos += 1;
        }
    }

    fn expect(&mut self, byte: u8, what: &'static str) -> Result<(), SyntaxError> {
        if self.peek() == Some(byte) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.err(what))
        }
    }

    /// One value at `pos`; `path`: what is still to be followed into it.
    fn value(&mut self, path: Option<&[String]>, depth: usize) -> Result<(), SyntaxError> {
        match self.peek() {
            Some(b'{') => self.container(path, depth, true),
            Some(b'[') => self.container(path, depth, false),
            Some(b'"') => self.string().map(|_| ()),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(b't') => self.literal(b"true"),
            Some(b'f') => self.literal(b"false"),
            Some(b'n') => self.literal(b"null"),
            Some(_) => Err(self.err("expected a value")),
            None => Err(self.err("unexpected end of the text")),
        }
    }

    fn literal(&mut self, word: &[u8]) -> Result<(), SyntaxError> {
        if self.text[self.pos..].starts_with(word) {
            self.pos += word.len();
            Ok(())
        } else {
            Err(self.err("expected a value"))
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.pos;
        while let Some(b'0'..=b'9') = self.peek() {
            self.pos += 1;
        }
        self.pos - start
    }

    fn number(&mut self) -> Result<(), SyntaxError> {
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        match self.peek() {
            Some(b'0') => self.pos += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("invalid number")),
        }
        if self.peek() == Some(b'.') {
            self.pos += 1;
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        if let Some(b'e' | b'E') = self.peek() {
            self.pos += 1;
            if let Some(b'+' | b'-') = self.peek() {
                self.pos += 1;
            }
            if self.digits() == 0 {
                return Err(self.err("invalid number"));
            }
        }
        Ok(())
    }

    /// A string at `pos`; returns its raw contents (between the quotes),
    /// and whether they hold an escape.
    fn string(&mut self) -> Result<(Range<usize>, bool), SyntaxError> {
        self.pos += 1;
        let start = self.pos;
        let mut escaped = false;
        loop {
            match self.peek() {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => break,
                Some(b'\\') => {
                    escaped = true;
                    self.escape()?;
                }
                Some(0..0x20) => return Err(self.err("control character in a string")),
                Some(_) => self.pos += 1,
            }
        }
        let raw = start..self.pos;
        if std::str::from_utf8(&self.text[raw.clone()]).is_err() {
            return Err(SyntaxError {
                what: "invalid UTF-8 in a string",
                at: start,
            });
        }
        self.pos += 1;
        Ok((raw, escaped))
    }

    /// An escape at `pos` (the backslash).
    fn escape(&mut self) -> Result<(), SyntaxError> {
        self.pos += 1;
        match self.peek() {
            Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                self.pos += 1;
                Ok(())
            }
            Some(b'u') => {
                self.pos += 1;
                match self.hex4()? {
                    0xD800..=0xDBFF => {
                        if !self.text[self.pos..].starts_with(b"\\u") {
                            return Err(self.err("lone leading surrogate in a hex escape"));
                        }
                        self.pos += 2;
                        match self.hex4()? {
                            0xDC00..=0xDFFF => Ok(()),
                            _ => Err(self.err("lone leading surrogate in a hex escape")),
                        }
                    }
                    0xDC00..=0xDFFF => Err(self.err("lone trailing surrogate in a hex escape")),
                    _ => Ok(()),
                }
            }
            _ => Err(self.err("invalid escape")),
        }
    }

    fn hex4(&mut self) -> Result<u32, SyntaxError> {
        let digits = self
            .text
            .get(self.pos..self.pos + 4)
            .ok_or_else(|| self.err("unexpected end of a hex escape"))?;
        let mut n = 0;
        for &d in digits {
            let v = (d as char)
                .to_digit(16)
                .ok_or_else(|| self.err("invalid hex escape"))?;
            n = n * 16 + v;
        }
        self.pos += 4;
        Ok(n)
    }

    /// An object (`object`) or array at `pos`. On the path, the entries
    /// that match its next token are cut (the last token) or followed.
    fn container(
        &mut self,
        path: Option<&[String]>,
        depth: usize,
        object: bool,
    ) -> Result<(), SyntaxError> {
        if depth >= MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        let (close, what) = if object {
            (b'}', "expected `,` or `}`")
        } else {
            (b']', "expected `,` or `]`")
        };
        let token = path.map(|p| (&p[0], &p[1..]));
        let index = match token {
            Some((t, rest)) if !object => index(t, rest.is_empty()),
            _ => None,
        };
        self.pos += 1;
        let mut entry_start = self.pos;
        self.ws();
        if self.peek() == Some(close) {
            self.pos += 1;
            return Ok(());
        }
        // An entry before this one was kept.
        let mut kept_one = false;
        let mut i = 0;
        loop {
            // An entry spans from after `{`, `[` or `,` to before the next
            // `,` or the close, spacing included.
            self.ws();
            let matched = if object {
                if self.peek() != Some(b'"') {
                    return Err(self.err("expected a key"));
                }
                let (key, escaped) = self.string()?;
                self.ws();
                self.expect(b':', "expected `:`")?;
                self.ws();
                match token {
                    Some((t, _)) => self.key_is(key, escaped, t)?,
                    None => false,
                }
            } else {
                index == Some(i)
            };
            match (matched, token) {
                (true, Some((_, rest))) if !rest.is_empty() => self.value(Some(rest), depth + 1)?,
                _ => self.value(None, depth + 1)?,
            }
            self.ws();
            let entry_end = self.pos;
            let cut = matched && token.is_some_and(|(_, rest)| rest.is_empty());
            let last = match self.peek() {
                Some(b',') => false,
                Some(c) if c == close => true,
                _ => return Err(self.err(what)),
            };
            if !cut {
                kept_one = true;
            } else if kept_one {
                // With the comma before it, at `entry_start - 1`.
                self.cuts.push(entry_start - 1..entry_end);
            } else if last {
                self.cuts.push(entry_start..entry_end);
            } else {
                // With the comma after it, at `entry_end`.
                self.cuts.push(entry_start..entry_end + 1);
            }
            self.pos += 1;
            if last {
                return Ok(());
            }
            entry_start = self.pos;
            i += 1;
        }
    }

    /// Whether the key with raw contents `raw` decodes to `token`.
    fn key_is(&self, raw: Range<usize>, escaped: bool, token: &str) -> Result<bool, SyntaxError> {
        let bytes = &self.text[raw.clone()];
        if !escaped {
            return Ok(bytes == token.as_bytes());
        }
        let mut quoted = Vec::with_capacity(bytes.len() + 2);
        quoted.push(b'"');
        quoted.extend_from_slice(bytes);
        quoted.push(b'"');
        // The escapes were checked while scanning: this cannot fail.
        let key: String =
            wasmhook_sdk::serde_json::from_slice(&quoted).map_err(|_| SyntaxError {
                what: "invalid escape in a key",
                at: raw.start,
            })?;
        Ok(key == token)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cut(text: &str, pointer: &str) -> String {
        let path = tokens(pointer).unwrap();
        match remove(text.as_bytes(), &path).unwrap() {
            Some(out) => String::from_utf8(out).unwrap(),
            None => text.to_string(),
        }
    }

    #[test]
    fn cuts_take_one_comma_and_keep_the_rest_as_written() {
        assert_eq!(cut(r#"{"a":1,"b":2,"c":3}"#, "/a"), r#"{"b":2,"c":3}"#);
        assert_eq!(cut(r#"{"a":1,"b":2,"c":3}"#, "/b"), r#"{"a":1,"c":3}"#);
        assert_eq!(cut(r#"{"a":1,"b":2,"c":3}"#, "/c"), r#"{"a":1,"b":2}"#);
        assert_eq!(cut(r#"{"a":1}"#, "/a"), r#"{}"#);
        assert_eq!(cut(r#"{ "a" : 1 }"#, "/a"), r#"{}"#);
        assert_eq!(
            cut("{\n  \"z\": 1,\n  \"a\": [1, 2],\n  \"m\": 3\n}", "/a"),
            "{\n  \"z\": 1,\n  \"m\": 3\n}"
        );
        assert_eq!(cut(r#"[1,2,3]"#, "/0"), r#"[2,3]"#);
        assert_eq!(cut(r#"[1,2,3]"#, "/2"), r#"[1,2]"#);
        assert_eq!(cut(r#"[1,2,3]"#, "/3"), r#"[1,2,3]"#);
    }

    #[test]
    fn repeated_keys_are_all_cut_even_in_a_row() {
        assert_eq!(cut(r#"{"a":1,"a":2,"b":3,"a":4}"#, "/a"), r#"{"b":3}"#);
        assert_eq!(cut(r#"{"a":1,"a":2}"#, "/a"), r#"{}"#);
        assert_eq!(
            cut(r#"{"u":{"e":1,"n":2},"u":{"e":3}}"#, "/u/e"),
            r#"{"u":{"n":2},"u":{}}"#
        );
    }

    #[test]
    fn keys_compare_decoded() {
        assert_eq!(cut(r#"{"em\u0061il":1,"n":2}"#, "/email"), r#"{"n":2}"#);
        assert_eq!(cut(r#"{"a\/b":1,"n":2}"#, "/a~1b"), r#"{"n":2}"#);
    }

    #[test]
    fn indexes_are_read_as_pointers_read_them() {
        assert_eq!(cut(r#"{"a":[1,[2,3]]}"#, "/a/1/0"), r#"{"a":[1,[3]]}"#);
        assert_eq!(cut(r#"{"a":[1,[2,3]]}"#, "/a/01/0"), r#"{"a":[1,[2,3]]}"#);
        assert_eq!(cut(r#"[1,2,3]"#, "/01"), r#"[1,3]"#);
        assert_eq!(cut(r#"[1,2,3]"#, "/+2"), r#"[1,2]"#);
        assert_eq!(cut(r#"[1,2,3]"#, "/-"), r#"[1,2,3]"#);
        assert_eq!(cut(r#"{"0":1}"#, "/0"), r#"{}"#);
    }

    #[test]
    fn what_is_not_json_fails_wherever_the_pointer_goes() {
        for bad in [
            "",
            "{",
            "[1,]",
            "{\"a\":1,}",
            "{\"a\" 1}",
            "{a:1}",
            "01",
            "1.",
            "-",
            "1e",
            "tru",
            "\"\\x\"",
            "\"\\u12\"",
            "\"\\ud800\"",
            "\"\\udc00\"",
            "\"a\nb\"",
            "[1] [2]",
            "{\"a\":1}}",
            "nul",
        ] {
            assert!(
                remove(bad.as_bytes(), &tokens("/zz").unwrap()).is_err(),
                "{bad:?} passed"
            );
        }
        assert!(remove(b"\"\xff\"", &tokens("/a").unwrap()).is_err());
        let deep = format!("{}{}", "[".repeat(MAX_DEPTH + 1), "]".repeat(MAX_DEPTH + 1));
        assert!(remove(deep.as_bytes(), &tokens("/a").unwrap()).is_err());
        let deepest = format!("{}{}", "[".repeat(MAX_DEPTH), "]".repeat(MAX_DEPTH));
        assert_eq!(remove(deepest.as_bytes(), &tokens("/a").unwrap()), Ok(None));
    }
}
