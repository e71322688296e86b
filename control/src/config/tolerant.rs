//! Keys read the way gobetween reads them: a key that matches a known key in other case is that
//! key (`Bind` is `bind`), and a key no section knows is ignored. Both are noted, with the key
//! path as written and the closest known key, so the loader can warn (or refuse, in strict mode).
//!
//! This is a thin wrapper around the format's own deserializer, which still reads the text once
//! and still reports every other error with its exact position. The wrapper only looks at the
//! keys of structs (whose known fields serde hands over) and passes everything else through.

use super::error::{closest, ConfigError, ConfigWarning};
use serde::de::{self, DeserializeSeed, Deserializer, IntoDeserializer, MapAccess, SeqAccess, Visitor};
use std::cell::RefCell;
use std::fmt;

/// More unknown keys than this is no configuration: the input is refused rather than read on,
/// so a hostile body cannot make the control thread collect warnings without end.
pub const MAX_KEY_NOTES: usize = 1000;

/// The notes gathered during one deserialization.
#[derive(Debug, Default)]
pub struct KeyNotes(RefCell<Vec<ConfigWarning>>);

impl KeyNotes {
    pub fn into_warnings(self) -> Vec<ConfigWarning> {
        self.0.into_inner()
    }

    /// Adds to a "missing field `x`" error the unknown key that was probably meant as `x`.
    pub fn hint(&self, mut error: ConfigError) -> ConfigError {
        let Some(field) =
            error.message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next())
        else {
            return error;
        };
        let meant = format!("did you mean `{field}`?");
        if let Some(key) =
            self.0.borrow().iter().find(|n| n.message.ends_with(&meant)).and_then(|n| n.key.clone())
        {
            error.message = format!("{}; `{key}` is not a key; {meant}", error.message);
        }
        error
    }

    fn push<E: de::Error>(&self, path: String, message: String) -> Result<(), E> {
        let mut notes = self.0.borrow_mut();
        if notes.len() >= MAX_KEY_NOTES {
            return Err(E::custom(format!("more than {MAX_KEY_NOTES} unknown or misspelt keys")));
        }
        notes.push(ConfigWarning::at_key(path, message));
        Ok(())
    }
}

/// Wraps `de` so that struct keys are matched loosely and noted in `notes`.
pub fn tolerant<D>(de: D, notes: &KeyNotes) -> Tolerant<'_, D> {
    Tolerant { de, at: String::new(), notes }
}

pub struct Tolerant<'n, D> {
    de: D,
    /// Dotted path of this value, with keys as written.
    at: String,
    notes: &'n KeyNotes,
}

impl<'n, D> Tolerant<'n, D> {
    /// The wrapped deserializer, and `inner` wrapped to follow the values it is handed.
    fn split<V>(self, inner: V, fields: Option<&'static [&'static str]>) -> (D, Visit<'n, V>) {
        (self.de, Visit { inner, at: self.at, notes: self.notes, fields })
    }
}

/// Methods that hand the visitor nested values: wrap it so the nesting is followed.
macro_rules! wrapped {
    ($($method:ident ( $($arg:ident : $ty:ty),* );)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            let (de, visitor) = self.split(visitor, None);
            de.$method($($arg,)* visitor)
        }
    )*};
}

/// Methods for scalars (and values nobody reads): nothing below them to follow.
macro_rules! forwarded {
    ($($method:ident ( $($arg:ident : $ty:ty),* );)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, D::Error> {
            self.de.$method($($arg,)* visitor)
        }
    )*};
}

impl<'de, D: Deserializer<'de>> Deserializer<'de> for Tolerant<'_, D> {
    type Error = D::Error;

    wrapped! {
        deserialize_any();
        deserialize_option();
        deserialize_newtype_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
    }

    forwarded! {
        deserialize_bool(); deserialize_i8(); deserialize_i16(); deserialize_i32(); deserialize_i64();
        deserialize_i128(); deserialize_u8(); deserialize_u16(); deserialize_u32(); deserialize_u64();
        deserialize_u128(); deserialize_f32(); deserialize_f64(); deserialize_char(); deserialize_str();
        deserialize_string(); deserialize_bytes(); deserialize_byte_buf(); deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier(); deserialize_ignored_any();
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, D::Error> {
        let (de, visitor) = self.split(visitor, Some(fields));
        de.deserialize_struct(name, fields, visitor)
    }

    fn is_human_readable(&self) -> bool {
        self.de.is_human_readable()
    }
}

/// A visitor whose maps and sequences are read through `Map` and `Seq`.
struct Visit<'n, V> {
    inner: V,
    at: String,
    notes: &'n KeyNotes,
    /// The known keys, when the value is a struct.
    fields: Option<&'static [&'static str]>,
}

impl<'n, V> Visit<'n, V> {
    /// The wrapped visitor, and `de` wrapped at this visitor's path.
    fn split<D>(self, de: D) -> (V, Tolerant<'n, D>) {
        (self.inner, Tolerant { de, at: self.at, notes: self.notes })
    }
}

macro_rules! visit_forwarded {
    ($($method:ident ( $ty:ty );)*) => {$(
        fn $method<E: de::Error>(self, v: $ty) -> Result<V::Value, E> {
            self.inner.$method(v)
        }
    )*};
}

impl<'de, V: Visitor<'de>> Visitor<'de> for Visit<'_, V> {
    type Value = V::Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.inner.expecting(f)
    }

    visit_forwarded! {
        visit_bool(bool); visit_i8(i8); visit_i16(i16); visit_i32(i32); visit_i64(i64);
        visit_i128(i128); visit_u8(u8); visit_u16(u16); visit_u32(u32); visit_u64(u64);
        visit_u128(u128); visit_f32(f32); visit_f64(f64); visit_char(char); visit_str(&str);
        visit_borrowed_str(&'de str); visit_string(String); visit_bytes(&[u8]);
        visit_borrowed_bytes(&'de [u8]); visit_byte_buf(Vec<u8>);
    }

    fn visit_none<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_none()
    }

    fn visit_unit<E: de::Error>(self) -> Result<V::Value, E> {
        self.inner.visit_unit()
    }

    fn visit_some<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        let (inner, de) = self.split(de);
        inner.visit_some(de)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, de: D) -> Result<V::Value, D::Error> {
        let (inner, de) = self.split(de);
        inner.visit_newtype_struct(de)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<V::Value, A::Error> {
        // serde's derive fills a struct from an array, field by field; Go refuses an array for
        // a struct (a section or a server), as a value of the wrong type.
        if self.fields.is_some() {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        }
        self.inner.visit_seq(Seq { seq, at: self.at, notes: self.notes, index: 0 })
    }

    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<V::Value, A::Error> {
        let map = Map { map, at: self.at, notes: self.notes, fields: self.fields, value_at: None };
        self.inner.visit_map(map)
    }

    fn visit_enum<A: de::EnumAccess<'de>>(self, data: A) -> Result<V::Value, A::Error> {
        self.inner.visit_enum(data)
    }
}

struct Seq<'n, A> {
    seq: A,
    at: String,
    notes: &'n KeyNotes,
    index: usize,
}

impl<'de, A: SeqAccess<'de>> SeqAccess<'de> for Seq<'_, A> {
    type Error = A::Error;

    fn next_element_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<Option<T::Value>, A::Error> {
        let at = format!("{}[{}]", self.at, self.index);
        self.index += 1;
        self.seq.next_element_seed(Seed { seed, at, notes: self.notes })
    }

    fn size_hint(&self) -> Option<usize> {
        self.seq.size_hint()
    }
}

struct Map<'n, A> {
    map: A,
    at: String,
    notes: &'n KeyNotes,
    fields: Option<&'static [&'static str]>,
    /// Path of the value about to be read; `None` for a value nobody reads (an unknown key's).
    value_at: Option<String>,
}

impl<'de, A: MapAccess<'de>> MapAccess<'de> for Map<'_, A> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(&mut self, seed: K) -> Result<Option<K::Value>, A::Error> {
        let Some(written) = self.map.next_key_seed(KeyText)? else { return Ok(None) };
        let at = if self.at.is_empty() { written.clone() } else { format!("{}.{written}", self.at) };
        let (key, value_at) = match self.fields {
            None => (written, Some(at)),
            Some(fields) => match known_key(&written, fields, &at, self.notes)? {
                Some(field) => (field.to_string(), Some(at)),
                // Not among the struct's fields, so serde's derive skips the value.
                None => (written, None),
            },
        };
        self.value_at = value_at;
        seed.deserialize(key.into_deserializer()).map(Some)
    }

    fn next_value_seed<T: DeserializeSeed<'de>>(&mut self, seed: T) -> Result<T::Value, A::Error> {
        match self.value_at.take() {
            Some(at) => self.map.next_value_seed(Seed { seed, at, notes: self.notes }),
            None => self.map.next_value_seed(seed),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        self.map.size_hint()
    }
}

/// The key a struct should see: itself, the known key it matches in other case, or `None` when
/// it matches none (noted either way).
fn known_key<E: de::Error>(
    written: &str,
    fields: &'static [&'static str],
    at: &str,
    notes: &KeyNotes,
) -> Result<Option<&'static str>, E> {
    if let Some(field) = fields.iter().find(|field| **field == written) {
        return Ok(Some(field));
    }
    if let Some(field) = fields.iter().find(|field| field.eq_ignore_ascii_case(written)) {
        notes.push(at.to_string(), format!("key `{written}` read as `{field}` (keys match in any case)"))?;
        return Ok(Some(field));
    }
    let message = match closest(written, fields.iter().copied()) {
        Some(near) => format!("unknown key `{written}`, ignored; did you mean `{near}`?"),
        // A short list helps; the discovery section's fifty keys would not.
        None if fields.len() <= 12 => {
            format!("unknown key `{written}`, ignored (known here: {})", fields.join(", "))
        }
        None => format!("unknown key `{written}`, ignored"),
    };
    notes.push(at.to_string(), message)?;
    Ok(None)
}

/// Reads a map key as text (configuration keys always are).
struct KeyText;

impl<'de> DeserializeSeed<'de> for KeyText {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<String, D::Error> {
        <String as de::Deserialize>::deserialize(de)
    }
}

/// A seed whose value is read through `Tolerant`.
struct Seed<'n, T> {
    seed: T,
    at: String,
    notes: &'n KeyNotes,
}

impl<'de, T: DeserializeSeed<'de>> DeserializeSeed<'de> for Seed<'_, T> {
    type Value = T::Value;

    fn deserialize<D: Deserializer<'de>>(self, de: D) -> Result<T::Value, D::Error> {
        self.seed.deserialize(Tolerant { de, at: self.at, notes: self.notes })
    }
}
