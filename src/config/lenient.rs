//! Reading the YAML leniently, so that one mistake hides no other. Each section, list item and
//! check kind's block is read on its own. Within one, an unknown key is reported and dropped, a
//! value of the wrong type is reported and dropped (the field takes its default), and the rest
//! is read again; a block that still cannot be read (a required field missing or broken) is
//! skipped, so the rules of everything else still run. A field missing from a mapping that
//! already lost a key to a reported error (`ur1:` for `url:`) is not reported twice.
//!
//! These errors say where they are in the text. serde_yaml_ng knows positions only while it
//! reads text (the document is read into a `Value` first, for `${ENV}`), so for each error the
//! text is read once more, down to the offender: an unknown key is placed at the key, anything
//! else at its value. That is bounded: in a huge file only the first few are placed.

use std::fmt;

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, Deserializer, EnumAccess, IgnoredAny, MapAccess,
    SeqAccess, Visitor,
};
use serde_yaml_ng::Value;

use super::path::{item_name, Segment, YamlPath};
use super::validate::{strip_location, Context};

/// Placing an error reads the text again: at most this many errors of one load are placed,
/// and no more than fit in [`LOCATE_BUDGET`] bytes read again in all (a 10,000-check file
/// with an error in each places its first few, not all 10,000 at a pass each).
const MAX_LOCATED: usize = 64;
const LOCATE_BUDGET: usize = 4 << 20;

impl Context {
    /// `value` (at `at`) as a `T`, with every unknown key and wrong value reported and dropped;
    /// `None` when what is left is still no `T`.
    pub(super) fn parse<T: DeserializeOwned>(
        &mut self,
        mut value: Value,
        at: &YamlPath,
    ) -> Option<T> {
        loop {
            let error = match serde_path_to_error::deserialize::<_, T>(&value) {
                Ok(parsed) => return Some(parsed),
                Err(error) => error,
            };
            let inner = segments(error.path(), &value);
            let path = at.join(&inner);
            let message = strip_location(&error.inner().to_string());
            let missing = message.starts_with("missing field `");
            if !(missing && self.lost_a_key(&path)) {
                let on_key = message.starts_with("unknown field `");
                let location = self.locate(path.segments(), on_key);
                self.error_at(&path, message, location);
            }
            // What is at fault goes, and the rest is read again without it.
            if !self.drop_node(at, &mut value, &inner) {
                return None;
            }
        }
    }

    /// The items of a list, each with a path that names it (`checks[0] "web"`), to be read
    /// one by one: an item that cannot be read hides no other.
    pub(super) fn items(&mut self, value: Option<Value>, at: &YamlPath) -> Vec<(YamlPath, Value)> {
        let items: Vec<Value> = match value {
            Some(value) => self.parse(value, at).unwrap_or_default(),
            None => Vec::new(),
        };
        Self::named(items, at)
    }

    /// The items of a list already read (`steps`, `routes`), each with the path that names it.
    pub(super) fn named(items: Vec<Value>, at: &YamlPath) -> Vec<(YamlPath, Value)> {
        items
            .into_iter()
            .enumerate()
            .map(|(i, item)| (at.item(i, &item), item))
            .collect()
    }

    /// A block that may be left out: its default then, and when it cannot be read at all.
    pub(super) fn parse_or_default<T: DeserializeOwned + Default>(
        &mut self,
        value: Option<Value>,
        at: &YamlPath,
    ) -> T {
        value.and_then(|v| self.parse(v, at)).unwrap_or_default()
    }

    /// Drops the deepest key on `inner` (a path below `node`, which sits at `base`) from its
    /// mapping, and remembers that the mapping lost a key. False when there is no such key.
    pub(super) fn drop_node(
        &mut self,
        base: &YamlPath,
        node: &mut Value,
        inner: &[Segment],
    ) -> bool {
        let Some(at) = inner.iter().rposition(|s| matches!(s, Segment::Key(_))) else {
            return false;
        };
        let Segment::Key(key) = &inner[at] else {
            return false;
        };
        let mut parent = node;
        for segment in &inner[..at] {
            let child = match segment {
                Segment::Key(k) => parent.get_mut(k.as_str()),
                Segment::Item { index, .. } => parent.get_mut(*index),
            };
            match child {
                Some(child) => parent = child,
                None => return false,
            }
        }
        let dropped = parent
            .as_mapping_mut()
            .and_then(|m| m.shift_remove(key.as_str()))
            .is_some();
        if dropped {
            self.dropped.insert(base.join(&inner[..at]).skeleton());
        }
        dropped
    }

    /// Whether the mapping at `path` lost a key to a reported error: what it now lacks (a
    /// check's kind after `tpc:`) was said already.
    pub(super) fn lost_a_key(&self, path: &YamlPath) -> bool {
        self.dropped.contains(&path.skeleton())
    }

    fn locate(&mut self, path: &[Segment], on_key: bool) -> Option<(usize, usize)> {
        let affordable = (LOCATE_BUDGET / self.text.len().max(1)).clamp(1, MAX_LOCATED);
        if self.located >= affordable {
            return None;
        }
        self.located += 1;
        locate(&self.text, path, on_key)
    }
}

/// serde's path of an error as segments, items named from `value` (the node it read).
fn segments(path: &serde_path_to_error::Path, value: &Value) -> Vec<Segment> {
    let mut out = Vec::new();
    let mut node = Some(value);
    for segment in path.iter() {
        match segment {
            serde_path_to_error::Segment::Map { key } => {
                node = node.and_then(|n| n.get(key.as_str()));
                out.push(Segment::Key(key.clone()));
            }
            serde_path_to_error::Segment::Seq { index } => {
                node = node.and_then(|n| n.get(*index));
                out.push(Segment::Item {
                    index: *index,
                    name: node.and_then(item_name),
                });
            }
            // Untagged enums and the like: the error is the enclosing node's.
            serde_path_to_error::Segment::Enum { .. } | serde_path_to_error::Segment::Unknown => {
                break
            }
        }
    }
    out
}

/// What the search raises where it arrives: only an error carrying this has the position.
const HERE: &str = "medic: the node looked for";

/// Line and column (1-based) of the node at `path` in `text`, or of its key with `on_key`.
fn locate(text: &str, path: &[Segment], on_key: bool) -> Option<(usize, usize)> {
    let document = serde_yaml_ng::Deserializer::from_str(text);
    let error = Seek { path, on_key }.deserialize(document).err()?;
    if !error.to_string().contains(HERE) {
        return None;
    }
    error.location().map(|l| (l.line(), l.column()))
}

/// Walks down to the node at `path` and fails there.
struct Seek<'a> {
    path: &'a [Segment],
    on_key: bool,
}

impl<'de> DeserializeSeed<'de> for Seek<'_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        let on_key = self.on_key;
        match self.path.split_first() {
            None => d.deserialize_any(Here),
            Some((Segment::Key(key), rest)) => d.deserialize_map(InMapping { key, rest, on_key }),
            Some((Segment::Item { index, .. }, rest)) => d.deserialize_seq(InSequence {
                index: *index,
                rest,
                on_key,
            }),
        }
    }
}

struct InMapping<'a> {
    key: &'a str,
    rest: &'a [Segment],
    on_key: bool,
}

impl<'de> Visitor<'de> for InMapping<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let stop_at_key = self.on_key && self.rest.is_empty();
        let target = Key {
            name: self.key,
            stop: stop_at_key,
        };
        while let Some(found) = map.next_key_seed(target.clone())? {
            if found {
                let (path, on_key) = (self.rest, self.on_key);
                return map.next_value_seed(Seek { path, on_key });
            }
            map.next_value::<IgnoredAny>()?;
        }
        Ok(())
    }
}

struct InSequence<'a> {
    index: usize,
    rest: &'a [Segment],
    on_key: bool,
}

impl<'de> Visitor<'de> for InSequence<'_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a sequence")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        for _ in 0..self.index {
            if seq.next_element::<IgnoredAny>()?.is_none() {
                return Ok(());
            }
        }
        let (path, on_key) = (self.rest, self.on_key);
        seq.next_element_seed(Seek { path, on_key })?;
        Ok(())
    }
}

/// A mapping's key: whether it is the one looked for (and, with `stop`, the failure there).
#[derive(Clone)]
struct Key<'a> {
    name: &'a str,
    stop: bool,
}

impl<'de> DeserializeSeed<'de> for Key<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Key<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E: de::Error>(self, key: &str) -> Result<bool, E> {
        match (key == self.name, self.stop) {
            (true, true) => Err(E::custom(HERE)),
            (found, _) => Ok(found),
        }
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<bool, E> {
        Ok(false)
    }

    fn visit_unit<E: de::Error>(self) -> Result<bool, E> {
        Ok(false)
    }
}

/// Fails on whatever node it meets: the error carries the node's position.
struct Here;

impl<'de> Visitor<'de> for Here {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any node")
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        Err(E::custom(HERE))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        Err(E::custom(HERE))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        Err(E::custom(HERE))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        Err(E::custom(HERE))
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        Err(E::custom(HERE))
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }

    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        Err(E::custom(HERE))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(HERE))
    }

    fn visit_map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(HERE))
    }

    fn visit_enum<A: EnumAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        Err(de::Error::custom(HERE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(path: &[&str]) -> Vec<Segment> {
        path.iter()
            .map(|s| match s.parse::<usize>() {
                Ok(index) => Segment::Item { index, name: None },
                Err(_) => Segment::Key(s.to_string()),
            })
            .collect()
    }

    #[test]
    fn nodes_and_keys_are_found_in_block_and_flow_style() {
        let text = "checks:\n  - name: web\n    interval: 10 seconds\n    http: {ur1: x}\n";
        assert_eq!(
            locate(text, &at(&["checks", "0", "interval"]), false),
            Some((3, 15))
        );
        assert_eq!(
            locate(text, &at(&["checks", "0", "interval"]), true),
            Some((3, 5))
        );
        assert_eq!(
            locate(text, &at(&["checks", "0", "http", "ur1"]), true),
            Some((4, 12))
        );
        assert_eq!(locate(text, &at(&["checks", "0"]), false), Some((2, 5)));
        assert_eq!(locate(text, &at(&["checks", "1"]), false), None);
        assert_eq!(locate(text, &at(&["nothing"]), false), None);
    }
}
