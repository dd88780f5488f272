use std::fmt;
use std::str::FromStr;

use crate::{Error, Result};

/// A plugin's configuration on one route: the `config = { … }` table of the
/// route's plugin entry in the router's TOML, as string key/value pairs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Config {
    pairs: Vec<(String, String)>,
}

impl Config {
    /// Build a config by hand, e.g. in a unit test.
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        Config {
            pairs: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// The config the router gives this plugin on the current route. Outside
    /// WebAssembly (native unit tests) there is no router, so it is empty.
    pub(crate) fn from_host() -> Self {
        #[cfg(target_arch = "wasm32")]
        {
            Config {
                pairs: crate::__bindings::wasmhook::plugin::host::config(),
            }
        }
        #[cfg(not(target_arch = "wasm32"))]
        {
            Config::default()
        }
    }

    /// The value of `key`, if set.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The value of `key`, or `default` when it is not set.
    pub fn get_or<'a>(&'a self, key: &str, default: &'a str) -> &'a str {
        self.get(key).unwrap_or(default)
    }

    /// A comma-separated value split into its trimmed, non-empty items.
    /// A missing key is an empty list.
    pub fn list(&self, key: &str) -> Vec<String> {
        self.get(key)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The value of `key`, or an error naming it when it is not set.
    pub fn require(&self, key: &str) -> Result<&str> {
        self.get(key)
            .ok_or_else(|| Error::msg(format!("config key {key:?} is required but not set")))
    }

    /// The value of `key` parsed as `T`: `cfg.parse::<u64>("min")?`. Not
    /// set, or not a valid `T`, is an error that names the key.
    pub fn parse<T: FromStr>(&self, key: &str) -> Result<T>
    where
        T::Err: fmt::Display,
    {
        parse_value(key, self.require(key)?)
    }

    /// [`Config::parse`], or `default` when `key` is not set. A value that is
    /// set but invalid is still an error.
    pub fn parse_or<T: FromStr>(&self, key: &str, default: T) -> Result<T>
    where
        T::Err: fmt::Display,
    {
        self.get(key).map_or(Ok(default), |v| parse_value(key, v))
    }

    /// A yes/no value: `true`/`false`, `yes`/`no`, `on`/`off`, `1`/`0`
    /// (any case). Not set is `false`; anything else is an error.
    pub fn bool(&self, key: &str) -> Result<bool> {
        self.bool_or(key, false)
    }

    /// [`Config::bool`], with `default` when `key` is not set.
    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        let Some(value) = self.get(key) else {
            return Ok(default);
        };
        match value.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" | "1" => Ok(true),
            "false" | "no" | "off" | "0" => Ok(false),
            _ => Err(Error::msg(format!(
                "config key {key:?} = {value:?} is not a yes/no value (true/false, yes/no, on/off, 1/0)"
            ))),
        }
    }

    /// All pairs, in the order the router gave them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

fn parse_value<T: FromStr>(key: &str, value: &str) -> Result<T>
where
    T::Err: fmt::Display,
{
    value.trim().parse().map_err(|e| {
        Error::msg(format!(
            "config key {key:?} = {value:?} is not a valid {}: {e}",
            std::any::type_name::<T>()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn list_splits_trims_and_skips_empty_items() {
        let cfg = Config::from_pairs([("allow", " push, release,,ping ")]);
        assert_eq!(cfg.list("allow"), ["push", "release", "ping"]);
        assert!(cfg.list("missing").is_empty());
    }

    #[test]
    fn typed_getters_name_the_key_when_they_fail() {
        let cfg = Config::from_pairs([("min", " 10 "), ("on", "Yes"), ("bad", "ten")]);
        assert_eq!(cfg.parse::<u64>("min").unwrap(), 10);
        assert_eq!(cfg.parse_or::<u64>("max", 99).unwrap(), 99);
        let err = cfg.parse::<u64>("bad").unwrap_err().to_string();
        assert!(
            err.contains("\"bad\" = \"ten\" is not a valid u64"),
            "{err}"
        );
        let err = cfg.parse::<u64>("missing").unwrap_err().to_string();
        assert!(err.contains("\"missing\" is required"), "{err}");
        assert!(cfg.bool("on").unwrap());
        assert!(!cfg.bool("missing").unwrap());
        assert!(cfg.bool_or("missing", true).unwrap());
        assert!(cfg.bool("bad").unwrap_err().to_string().contains("yes/no"));
    }

    #[test]
    fn get_and_default() {
        let cfg = Config::from_pairs([("a", "1")]);
        assert_eq!(cfg.get("a"), Some("1"));
        assert_eq!(cfg.get("b"), None);
        assert_eq!(cfg.get_or("b", "x"), "x");
    }
}
