//! Keeps the configuration reference (`docs/configuration.md`) in step with the model: every
//! table the model reads has a section headed by its path in brackets (`` ## `[api]` ``,
//! `` ### `[servers.NAME.tls]` ``), and every key of that table a row of the section's table
//! whose first cell is the key (`` | `bind` | ``). A key added to the model without a row, or a
//! row left behind by a key that went away, fails the test.
//!
//! The keys come from the model itself, not from a list kept by hand: `tables` deserializes a
//! `Config` from a deserializer that answers every struct with all of the fields serde's derive
//! says it has (the names it matches in the file, renames and all), recording them as it goes.

use super::model::Config;
use serde::de::value::{Error, StrDeserializer};
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::cell::RefCell;
use std::collections::BTreeMap;

/// Every table of the model by dotted path (`""` for the file itself, `NAME` for a name the user
/// chooses, as in `servers.NAME`), with its keys.
fn tables() -> BTreeMap<String, Vec<&'static str>> {
    let found = RefCell::new(BTreeMap::new());
    Config::deserialize(Walker { at: String::new(), found: &found })
        .expect("every value the walker offers reads as the model's type");
    found.into_inner()
}

/// Offers, for each value, the simplest value of the type asked for: all fields of a struct,
/// one entry named `NAME` of a map, `Some` of an option, the first variant of an enum, and `"0"`
/// for text (which every duration type reads too).
struct Walker<'a> {
    at: String,
    found: &'a RefCell<BTreeMap<String, Vec<&'static str>>>,
}

impl<'a> Walker<'a> {
    fn below(&self, key: &str) -> Walker<'a> {
        let at = if self.at.is_empty() { key.to_string() } else { format!("{}.{key}", self.at) };
        Walker { at, found: self.found }
    }
}

macro_rules! zero {
    ($($method:ident => $visit:ident ( $($value:expr)? );)*) => {$(
        fn $method<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
            visitor.$visit($($value)?)
        }
    )*};
}

impl<'de> Deserializer<'de> for Walker<'_> {
    type Error = Error;

    zero! {
        deserialize_any => visit_str("0");
        deserialize_str => visit_str("0");
        deserialize_string => visit_str("0");
        deserialize_identifier => visit_str("0");
        deserialize_char => visit_char('0');
        deserialize_bool => visit_bool(false);
        deserialize_i8 => visit_i64(0);
        deserialize_i16 => visit_i64(0);
        deserialize_i32 => visit_i64(0);
        deserialize_i64 => visit_i64(0);
        deserialize_i128 => visit_i64(0);
        deserialize_u8 => visit_u64(0);
        deserialize_u16 => visit_u64(0);
        deserialize_u32 => visit_u64(0);
        deserialize_u64 => visit_u64(0);
        deserialize_u128 => visit_u64(0);
        deserialize_f32 => visit_f64(0.0);
        deserialize_f64 => visit_f64(0.0);
        deserialize_bytes => visit_bytes(b"0");
        deserialize_byte_buf => visit_bytes(b"0");
        deserialize_unit => visit_unit();
        deserialize_ignored_any => visit_unit();
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_some(self)
    }

    fn deserialize_unit_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_unit()
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        visitor: V,
    ) -> Result<V::Value, Error> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_seq(de::value::SeqDeserializer::new(std::iter::empty::<&str>()))
    }

    fn deserialize_tuple<V: Visitor<'de>>(self, _: usize, visitor: V) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        _: usize,
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Error> {
        visitor.visit_map(Entries { keys: ["NAME"].iter(), walker: self, value_at: None })
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        self.found.borrow_mut().insert(self.at.clone(), fields.to_vec());
        visitor.visit_map(Entries { keys: fields.iter(), walker: self, value_at: None })
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _: &'static str,
        variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Error> {
        let first: StrDeserializer<'_, Error> = variants[0].into_deserializer();
        visitor.visit_enum(first)
    }
}

/// The entries of a struct (each field) or of a map (one, `NAME`).
struct Entries<'a> {
    keys: std::slice::Iter<'static, &'static str>,
    walker: Walker<'a>,
    value_at: Option<&'static str>,
}

impl<'de> MapAccess<'de> for Entries<'_> {
    type Error = Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, Error> {
        let Some(&key) = self.keys.next() else { return Ok(None) };
        self.value_at = Some(key);
        let key: StrDeserializer<'_, Error> = key.into_deserializer();
        seed.deserialize(key).map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, Error> {
        let key = self.value_at.take().expect("a value follows its key");
        seed.deserialize(self.walker.below(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const REFERENCE: &str = include_str!("../../../docs/configuration.md");

    /// The reference's keyed sections: table path → the keys in the first cell of its rows.
    fn documented(markdown: &str) -> BTreeMap<String, Vec<String>> {
        let mut sections = BTreeMap::new();
        let mut current: Option<String> = None;
        for line in markdown.lines() {
            if line.starts_with('#') {
                current = line
                    .split_once("`[")
                    .and_then(|(_, rest)| rest.split_once("]`"))
                    .map(|(path, _)| path.to_string());
                if let Some(path) = &current {
                    assert!(
                        sections.insert(path.clone(), Vec::new()).is_none(),
                        "configuration.md has two sections for `[{path}]`"
                    );
                }
                continue;
            }
            let (Some(path), Some(row)) = (&current, line.strip_prefix("| `")) else { continue };
            let key = row.split('`').next().unwrap_or_default();
            sections.get_mut(path).expect("section registered").push(key.to_string());
        }
        sections
    }

    /// What is missing from (or stale in) `markdown`, one line each.
    fn gaps(markdown: &str) -> Vec<String> {
        let doc = documented(markdown);
        let model = tables();
        let mut gaps = Vec::new();
        for (path, keys) in model.iter().filter(|(path, _)| !path.is_empty()) {
            let Some(rows) = doc.get(path) else {
                gaps.push(format!("no section headed `[{path}]` (keys {keys:?})"));
                continue;
            };
            for key in keys {
                if !rows.iter().any(|row| row == key) {
                    gaps.push(format!("`[{path}]` has no row for key `{key}`"));
                }
            }
            for row in rows {
                if !keys.contains(&row.as_str()) {
                    gaps.push(format!("`[{path}]` documents `{row}`, which the model does not read"));
                }
            }
        }
        for path in doc.keys().filter(|path| !model.contains_key(*path)) {
            gaps.push(format!("section `[{path}]` is no table of the model"));
        }
        gaps
    }

    #[test]
    fn walker_finds_every_table() {
        let tables = tables();
        assert!(tables[""].contains(&"servers"));
        assert!(tables["runtime"].contains(&"shards"));
        assert!(tables["api.basic_auth"].contains(&"login"));
        assert!(tables["servers.NAME"].contains(&"accept_proxy_protocol"));
        assert!(tables["servers.NAME.discovery"].contains(&"consul_service_datacenter"));
        assert!(tables["servers.NAME.healthcheck"].contains(&"exec_expected_negative_output"));
    }

    #[test]
    fn every_config_key_is_in_the_reference() {
        let gaps = gaps(REFERENCE);
        assert!(gaps.is_empty(), "docs/configuration.md is out of step with the model:\n{}", gaps.join("\n"));
    }

    #[test]
    fn a_key_missing_from_the_reference_is_found() {
        let without_shards: String = REFERENCE
            .lines()
            .filter(|line| !line.starts_with("| `shards`"))
            .map(|line| format!("{line}\n"))
            .collect();
        assert_eq!(gaps(&without_shards), ["`[runtime]` has no row for key `shards`"]);
        let stale = REFERENCE.replace("| `splice` |", "| `splice` |\n| `spliced` | bool |");
        assert_eq!(gaps(&stale), ["`[runtime]` documents `spliced`, which the model does not read"]);
    }
}
