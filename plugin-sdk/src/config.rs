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

    /// All pairs, in the order the router gave them.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
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
    fn get_and_default() {
        let cfg = Config::from_pairs([("a", "1")]);
        assert_eq!(cfg.get("a"), Some("1"));
        assert_eq!(cfg.get("b"), None);
        assert_eq!(cfg.get_or("b", "x"), "x");
    }
}
