//! [`SmallMap`]: a map kept as one sorted vector, for the one- or two-entry maps every
//! plan instance carries (matrix coordinates, input bindings, command outs, output
//! hashes). A `BTreeMap` allocates a node of about 600 bytes even for one entry, and the
//! plan of a 10,000-member sweep (30,000 instances) spent a third of its time having the
//! kernel zero that memory. Lookups are binary searches; inserts shift, which is cheap at
//! these sizes.
//!
//! It behaves like `BTreeMap` where the code relies on it: iteration in key order, the
//! last of duplicate keys wins on `collect`, and serde writes and reads a map (`{}` when
//! empty), so fingerprint and plan JSON are byte-identical to the `BTreeMap` ones.

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, Serializer};
use std::borrow::Borrow;
use std::fmt;
use std::marker::PhantomData;

/// A sorted-vector map; see the module documentation.
#[derive(Clone, PartialEq, Eq)]
pub struct SmallMap<K, V> {
    entries: Vec<(K, V)>,
}

impl<K, V> SmallMap<K, V> {
    pub const fn new() -> Self {
        SmallMap {
            entries: Vec::new(),
        }
    }

    pub fn with_capacity(capacity: usize) -> Self {
        SmallMap {
            entries: Vec::with_capacity(capacity),
        }
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in key order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = (&K, &V)> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator + Clone {
        self.entries.iter().map(|(_, v)| v)
    }
}

impl<K: Ord, V> SmallMap<K, V> {
    fn find<Q>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.entries.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| &self.entries[i].1)
    }

    /// Inserts or replaces; returns the value replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        // Entries mostly arrive in order: appending is the common case.
        if self.entries.last().is_none_or(|(last, _)| *last < key) {
            self.entries.push((key, value));
            return None;
        }
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, value)),
            Err(i) => {
                self.entries.insert(i, (key, value));
                None
            }
        }
    }
    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| self.entries.remove(i).1)
    }
}

impl<K, V> Default for SmallMap<K, V> {
    fn default() -> Self {
        SmallMap::new()
    }
}

/// `map[key]`, like `BTreeMap`: panics if the key is absent.
impl<K: Ord + Borrow<Q>, Q: Ord + ?Sized, V> std::ops::Index<&Q> for SmallMap<K, V> {
    type Output = V;

    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("no entry found for key")
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SmallMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for SmallMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut map = SmallMap::new();
        map.extend(iter);
        map
    }
}

impl<K: Ord, V> Extend<(K, V)> for SmallMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        let iter = iter.into_iter();
        self.entries.reserve(iter.size_hint().0);
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K, V> IntoIterator for SmallMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.into_iter()
    }
}

impl<'a, K, V> IntoIterator for &'a SmallMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (K, V)>, fn(&'a (K, V)) -> (&'a K, &'a V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.entries.iter().map(|(k, v)| (k, v))
    }
}

impl<K: Serialize, V: Serialize> Serialize for SmallMap<K, V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.len()))?;
        for (k, v) in self {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Deserialize<'de> for SmallMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MapVisitor<K, V>(PhantomData<(K, V)>);

        impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Visitor<'de> for MapVisitor<K, V> {
            type Value = SmallMap<K, V>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Self::Value, A::Error> {
                let mut map = SmallMap::with_capacity(access.size_hint().unwrap_or(0).min(64));
                while let Some((k, v)) = access.next_entry()? {
                    map.insert(k, v);
                }
                Ok(map)
            }
        }

        deserializer.deserialize_map(MapVisitor(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::SmallMap;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        /// Same entries, same order, same JSON as a BTreeMap fed the same inserts.
        #[test]
        fn behaves_like_a_btree_map(ops in prop::collection::vec((0u8..12, any::<i32>()), 0..40)) {
            let mut small = SmallMap::new();
            let mut btree = BTreeMap::new();
            for (k, v) in &ops {
                let key = format!("k{k}");
                prop_assert_eq!(small.insert(key.clone(), *v), btree.insert(key, *v));
            }
            prop_assert!(small.iter().eq(btree.iter()));
            prop_assert_eq!(small.len(), btree.len());
            for k in 0u8..12 {
                let key = format!("k{k}");
                prop_assert_eq!(small.get(key.as_str()), btree.get(key.as_str()));
            }
            let json = serde_json::to_string(&small).unwrap();
            prop_assert_eq!(&json, &serde_json::to_string(&btree).unwrap());
            let back: SmallMap<String, i32> = serde_json::from_str(&json).unwrap();
            prop_assert_eq!(back, small);
            let collected: SmallMap<String, i32> =
                ops.iter().map(|(k, v)| (format!("k{k}"), *v)).collect();
            prop_assert!(collected.iter().eq(btree.iter()));
        }
    }

    #[test]
    fn an_empty_map_is_an_empty_json_object() {
        let empty: SmallMap<String, u32> = SmallMap::new();
        assert_eq!(serde_json::to_string(&empty).unwrap(), "{}");
    }
    #[test]
    fn remove_takes_the_entry_out() {
        let mut m: SmallMap<String, u32> = [("b".to_string(), 2), ("a".to_string(), 1)]
            .into_iter()
            .collect();
        assert_eq!(m.remove("a"), Some(1));
        assert_eq!(m.remove("a"), None);
        assert!(m.keys().eq(["b"]
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .iter()));
    }
}
