//! Writes of one map's change (a [`Delta`]) in batches, counted against a
//! [`Budget`] so tests can make a write fail at any entry and check that
//! nothing of a refused policy stays behind.

use std::os::fd::BorrowedFd;

use aya::maps::{lpm_trie::Key, LpmTrie, MapData};

use super::{access::map_err, delta::Delta, DatapathError, Result};
use crate::bpfsys;

/// Counts entries written, failing where a test asked it to.
pub(super) struct Budget {
    pub(super) written: usize,
    pub(super) fail_at: Option<usize>,
}

impl Budget {
    /// Accounts for `n` entries; fails where a test asked it to.
    pub(super) fn spend(&mut self, n: usize) -> Result<()> {
        let allowed = self.allowed(n);
        self.written += allowed;
        if allowed < n {
            return Err(DatapathError::Injected(self.written));
        }
        Ok(())
    }

    /// How many of `n` entries may be written before the failure.
    pub(super) fn allowed(&self, n: usize) -> usize {
        match self.fail_at {
            Some(at) => n.min(at.saturating_sub(self.written)),
            None => n,
        }
    }

    /// Budgets for writes of `lens` entries made side by side, each
    /// allowed what it would be allowed if they were made in a row. Spends
    /// nothing: the caller spends `lens` after the writes.
    pub(super) fn split<const N: usize>(&self, lens: [usize; N]) -> [Budget; N] {
        let mut probe = Budget {
            written: self.written,
            fail_at: self.fail_at,
        };
        lens.map(|n| {
            let allowed = probe.allowed(n);
            probe.written += allowed;
            Budget {
                written: 0,
                fail_at: (allowed < n).then_some(allowed),
            }
        })
    }
}

/// Writes `keys[i] -> values[i]` in batches, as far as the budget allows.
pub(super) fn put<K, V>(
    fd: BorrowedFd<'_>,
    name: &'static str,
    keys: &[K],
    values: &[V],
    b: &mut Budget,
) -> Result<()> {
    let n = b.allowed(keys.len());
    bpfsys::update_all(fd, &keys[..n], &values[..n])
        .map_err(|(_, source)| DatapathError::Batch { name, source })?;
    b.spend(keys.len())
}

/// Deletes `keys` in batches (missing ones are fine).
pub(super) fn drop_keys<K>(fd: BorrowedFd<'_>, name: &'static str, keys: &[K]) -> Result<()> {
    bpfsys::delete_all(fd, keys)
        .map(drop)
        .map_err(|source| DatapathError::Batch { name, source })
}

/// Resets the array entries `indices` to `empty`.
pub(super) fn zero<V: Copy>(
    fd: BorrowedFd<'_>,
    name: &'static str,
    indices: &[u32],
    empty: V,
) -> Result<()> {
    bpfsys::update_all(fd, indices, &vec![empty; indices.len()])
        .map_err(|(_, source)| DatapathError::Batch { name, source })
}

/// Applies one hash map's change, its keys put in slot form by `key`:
/// removals first, so the slot never holds more than the new policy.
pub(super) fn hash<K: Copy, V: Copy, M>(
    fd: BorrowedFd<'_>,
    name: &'static str,
    d: Delta<K, V>,
    key: impl Fn(K) -> M,
    b: &mut Budget,
) -> Result<()> {
    let gone: Vec<M> = d.gone.into_iter().map(&key).collect();
    drop_keys(fd, name, &gone)?;
    let (k, v): (Vec<M>, Vec<V>) = d.put.into_iter().map(|(k, v)| (key(k), v)).unzip();
    put(fd, name, &k, &v, b)
}

/// Applies one LPM trie's change entry by entry: tries have no batch
/// operations (subnets are few; feed networks are written this way too).
pub(super) fn lpm<A, const N: usize, V: aya::Pod>(
    trie: &mut LpmTrie<MapData, [u8; N], V>,
    name: &'static str,
    d: Delta<(A, u8), V>,
    key: impl Fn(&A, u8) -> Key<[u8; N]>,
    b: &mut Budget,
) -> Result<()> {
    for (a, plen) in &d.gone {
        let _ = trie.remove(&key(a, *plen));
    }
    for ((a, plen), v) in &d.put {
        b.spend(1)?;
        trie.insert(&key(a, *plen), v, 0).map_err(map_err(name))?;
    }
    Ok(())
}

/// Applies one array's change: removed entries are reset to the default.
pub(super) fn array<K: Copy, V: Copy + Default>(
    fd: BorrowedFd<'_>,
    name: &'static str,
    d: Delta<K, V>,
    index: impl Fn(K) -> u32,
    b: &mut Budget,
) -> Result<()> {
    let gone: Vec<u32> = d.gone.into_iter().map(&index).collect();
    zero(fd, name, &gone, V::default())?;
    let (k, v): (Vec<u32>, Vec<V>) = d.put.into_iter().map(|(k, v)| (index(k), v)).unzip();
    put(fd, name, &k, &v, b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn side_by_side_budgets_allow_what_writes_in_a_row_would() {
        let b = Budget {
            written: 1,
            fail_at: Some(6),
        };
        let [x, y, z] = b.split([3, 4, 2]);
        assert_eq!(x.fail_at, None, "the first three fit");
        assert_eq!(y.fail_at, Some(2), "two of four before the failure");
        assert_eq!(z.fail_at, Some(0), "nothing after it");
        let unlimited = Budget {
            written: 0,
            fail_at: None,
        };
        assert!(unlimited.split([5, 5]).iter().all(|b| b.fail_at.is_none()));
    }
}
