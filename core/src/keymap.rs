//! A small, immutable hash map from u64 keys to u32 values, for the
//! lookups on the packet path that a snapshot answers (is this a VIP, which
//! service is this, is this a NAT real, which static neighbor): built once
//! when the snapshot is compiled, then one multiply and, nearly always, one
//! probe per lookup. Open addressing, at most half full.

use crate::flow::mix64;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyMap {
    /// (key, value + 1); value 0 marks an empty slot.
    slots: Box<[(u64, u32)]>,
    mask: usize,
}

impl Default for KeyMap {
    fn default() -> Self {
        KeyMap::build(std::iter::empty())
    }
}

impl KeyMap {
    /// Builds from (key, value) pairs; a repeated key keeps its first value.
    pub fn build(entries: impl IntoIterator<Item = (u64, u32)>) -> KeyMap {
        let entries: Vec<(u64, u32)> = entries.into_iter().collect();
        let size = (entries.len() * 2).next_power_of_two().max(8);
        let mut slots = vec![(0u64, 0u32); size].into_boxed_slice();
        let mask = size - 1;
        for (k, v) in entries {
            let mut i = (mix64(k) as usize) & mask;
            loop {
                if slots[i].1 == 0 {
                    slots[i] = (k, v.saturating_add(1));
                    break;
                }
                if slots[i].0 == k {
                    break;
                }
                i = (i + 1) & mask;
            }
        }
        KeyMap { slots, mask }
    }

    #[inline(always)]
    pub fn get(&self, key: u64) -> Option<u32> {
        let mut i = (mix64(key) as usize) & self.mask;
        loop {
            let (k, v) = self.slots[i];
            if v == 0 {
                return None;
            }
            if k == key {
                return Some(v - 1);
            }
            i = (i + 1) & self.mask;
        }
    }

    #[inline]
    pub fn contains(&self, key: u64) -> bool {
        self.get(key).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_what_it_was_built_with_and_nothing_else() {
        let m = KeyMap::build((0..1000u64).map(|k| (k * 7919, k as u32)));
        for k in 0..1000u64 {
            assert_eq!(m.get(k * 7919), Some(k as u32));
            assert_eq!(m.get(k * 7919 + 1), None);
        }
        assert_eq!(KeyMap::default().get(0), None);
        let dup = KeyMap::build([(5, 1), (5, 2)]);
        assert_eq!(dup.get(5), Some(1));
    }
}
