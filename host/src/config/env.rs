//! `${ENV_VAR}` substitution inside config string values.

use std::fmt;

use serde::{Deserialize, Deserializer};

/// A config string with `${VAR}` replaced by the variable's value. `$${` is a
/// literal `${`. A variable that is not set is an error at that key's line.
#[derive(Clone, PartialEq, Eq)]
pub struct Text(pub String);

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&self.0, f)
    }
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        expand(&raw, |name| std::env::var(name).ok())
            .map(Text)
            .map_err(serde::de::Error::custom)
    }
}

/// Substitute `${NAME}` using `lookup`.
pub fn expand(input: &str, lookup: impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(pos) = rest.find('$') {
        out.push_str(&rest[..pos]);
        let after = &rest[pos..];
        if let Some(tail) = after.strip_prefix("$${") {
            out.push_str("${");
            rest = tail;
        } else if let Some(tail) = after.strip_prefix("${") {
            let end = tail
                .find('}')
                .ok_or_else(|| format!("unclosed `${{` in {input:?}: write `${{NAME}}`"))?;
            let name = &tail[..end];
            if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!(
                    "`${{{name}}}` is not a valid environment variable reference (letters, digits and _ only)"
                ));
            }
            let value = lookup(name).ok_or_else(|| {
                format!("environment variable {name} is not set (referenced as `${{{name}}}`)")
            })?;
            out.push_str(&value);
            rest = &tail[end + 1..];
        } else {
            out.push('$');
            rest = &after[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::expand;

    fn env(name: &str) -> Option<String> {
        (name == "SECRET").then(|| "s3cr\"et".to_string())
    }

    #[test]
    fn substitutes_and_escapes() {
        assert_eq!(expand("a ${SECRET} b", env).unwrap(), "a s3cr\"et b");
        assert_eq!(
            expand("$${SECRET} costs $5", env).unwrap(),
            "${SECRET} costs $5"
        );
        assert_eq!(expand("plain", env).unwrap(), "plain");
    }

    #[test]
    fn errors_name_the_variable() {
        let err = expand("${MISSING_VAR}", env).unwrap_err();
        assert!(err.contains("MISSING_VAR is not set"), "{err}");
        assert!(expand("${OPEN", env).unwrap_err().contains("unclosed"));
        assert!(expand("${a-b}", env).unwrap_err().contains("not a valid"));
    }
}
