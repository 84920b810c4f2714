//! How the datapath's maps are reached: the constructors of their
//! generation-slotted keys (so no caller builds a key with its padding by
//! hand), where a map comes from, and walks over a whole map in batches.

use std::os::fd::{AsFd, BorrowedFd};

use aya::maps::{lpm_trie::Key, HashMap, IterableMap, LpmTrie, MapData};
use ispf_common::*;

use super::{DatapathError, Result};

pub(super) fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> DatapathError {
    move |source| DatapathError::Map { name, source }
}

/// Where a map comes from: a freshly loaded object, pins, or a second
/// handle on maps already open (by id).
pub(super) type Source<'a> = dyn FnMut(&'static str) -> Result<aya::maps::Map> + 'a;

pub(super) fn mac_key(slot: u8, mac: [u8; 6]) -> MacKey {
    MacKey { slot, _pad: 0, mac }
}

pub(super) fn v4_key(slot: u8, addr: [u8; 4]) -> V4Key {
    V4Key {
        slot,
        _pad: [0; 3],
        addr,
    }
}

pub(super) fn v6_key(slot: u8, addr: [u8; 16]) -> V6Key {
    V6Key {
        slot,
        _pad: [0; 3],
        addr,
    }
}

pub(super) fn v4_lpm(slot: u8, a: &[u8; 4], plen: u8) -> Key<[u8; 5]> {
    Key::new(8 + plen as u32, [slot, a[0], a[1], a[2], a[3]])
}

pub(super) fn v6_lpm(slot: u8, a: &[u8; 16], plen: u8) -> Key<[u8; 17]> {
    let mut d = [0u8; 17];
    d[0] = slot;
    d[1..].copy_from_slice(a);
    Key::new(8 + plen as u32, d)
}

pub(super) fn port_index(slot: u8, table: u32, port: u16) -> u32 {
    (slot as u32 * PORT_TABLES + table) * 65536 + port as u32
}

pub(super) fn segment_index(slot: u8, id: u16) -> u32 {
    slot as u32 * MAX_SEGMENTS + id as u32
}

pub(super) fn vlan_index(slot: u8, vlan: u16) -> u32 {
    slot as u32 * VLAN_SLOTS + vlan as u32
}

/// The descriptor of a map, for the batch operations of [`crate::bpfsys`].
pub(super) fn fd<K: aya::Pod, V, M: IterableMap<K, V>>(m: &M) -> BorrowedFd<'_> {
    m.map().fd().as_fd()
}

/// Removes the entries of `map` that `doomed` picks; returns how many.
/// Read and deleted in batches: a walk of one syscall per key took a
/// quarter of a second per hundred thousand entries.
pub(super) fn remove_where<K: aya::Pod + Default, V: aya::Pod + Default>(
    map: &mut HashMap<MapData, K, V>,
    doomed: impl Fn(&K, &V) -> bool,
) -> usize {
    let mut keys = Vec::new();
    let walked = crate::bpfsys::scan(fd(map), |k: &K, v: &V| {
        if doomed(k, v) {
            keys.push(*k);
        }
    });
    if walked.is_err() {
        // Batch operations unavailable: one key at a time.
        keys = map
            .iter()
            .filter_map(|e| e.ok())
            .filter(|(k, v)| doomed(k, v))
            .map(|(k, _)| k)
            .collect();
    }
    match crate::bpfsys::delete_all(fd(map), &keys) {
        Ok(n) => n,
        Err(_) => keys.iter().filter(|k| map.remove(k).is_ok()).count(),
    }
}

/// Keys of an LPM trie whose first byte (the generation slot) is `slot`.
pub(super) fn lpm_keys_of<const N: usize, V: aya::Pod>(
    trie: &LpmTrie<MapData, [u8; N], V>,
    slot: u8,
) -> Vec<Key<[u8; N]>> {
    trie.keys()
        .filter_map(|k| k.ok())
        .filter(|k| k.data()[0] == slot)
        .collect()
}

/// Keys of `map` that `pick` selects, read in batches.
pub(super) fn keys_where<K: aya::Pod + Default, V: aya::Pod + Default>(
    map: &HashMap<MapData, K, V>,
    pick: impl Fn(&K) -> bool,
) -> Vec<K> {
    let mut keys = Vec::new();
    if crate::bpfsys::scan(fd(map), |k: &K, _: &V| {
        if pick(k) {
            keys.push(*k);
        }
    })
    .is_err()
    {
        keys = map
            .keys()
            .filter_map(|k| k.ok())
            .filter(|k| pick(k))
            .collect();
    }
    keys
}
