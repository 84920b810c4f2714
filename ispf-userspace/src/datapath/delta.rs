//! What a generation slot must change to go from the policy it holds to the
//! next one. A runtime decision (an admit, a quarantine, a role session)
//! changes one device of a hundred thousand; rewriting the slot whole made
//! each one cost as much as a reload of the file. The slot being written is
//! the inactive one, so the order of its deletes and writes is invisible to
//! packets.

/// One map's change: entries to write (new, or with another value) and
/// keys to remove.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Delta<K, V> {
    pub put: Vec<(K, V)>,
    pub gone: Vec<K>,
}

/// Entries sorted by key (the compiler's maps come out sorted; anything
/// else is sorted here, at a cost, rather than diffed wrongly). The last of
/// equal keys wins, as the last of equal map writes would.
fn sorted<K: Ord + Copy, V: Copy>(e: &[(K, V)]) -> std::borrow::Cow<'_, [(K, V)]> {
    if e.windows(2).all(|w| w[0].0 < w[1].0) {
        return std::borrow::Cow::Borrowed(e);
    }
    let mut v = e.to_vec();
    v.sort_by_key(|(k, _)| *k);
    let mut out: Vec<(K, V)> = Vec::with_capacity(v.len());
    for (k, val) in v {
        match out.last_mut() {
            Some(last) if last.0 == k => last.1 = val,
            _ => out.push((k, val)),
        }
    }
    std::borrow::Cow::Owned(out)
}

/// The change from `old` (what the slot holds; `None`: nothing) to `new`.
pub(super) fn diff<K, V>(old: Option<&[(K, V)]>, new: &[(K, V)]) -> Delta<K, V>
where
    K: Ord + Copy,
    V: PartialEq + Copy,
{
    let new = sorted(new);
    let Some(old) = old else {
        return Delta {
            put: new.into_owned(),
            gone: Vec::new(),
        };
    };
    let old = sorted(old);
    let (mut put, mut gone) = (Vec::new(), Vec::new());
    let (mut i, mut j) = (0, 0);
    while i < old.len() || j < new.len() {
        match (old.get(i), new.get(j)) {
            (Some(o), Some(n)) if o.0 == n.0 => {
                if o.1 != n.1 {
                    put.push(*n);
                }
                i += 1;
                j += 1;
            }
            (Some(o), Some(n)) if o.0 < n.0 => {
                gone.push(o.0);
                i += 1;
            }
            (Some(o), None) => {
                gone.push(o.0);
                i += 1;
            }
            (_, Some(n)) => {
                put.push(*n);
                j += 1;
            }
            (None, None) => unreachable!("the loop condition"),
        }
    }
    Delta { put, gone }
}

/// [`diff`] of entries whose key is two fields of a triple (the LPM tries:
/// address and prefix length).
pub(super) fn diff3<A, B, V>(old: Option<&[(A, B, V)]>, new: &[(A, B, V)]) -> Delta<(A, B), V>
where
    A: Ord + Copy,
    B: Ord + Copy,
    V: PartialEq + Copy,
{
    let pairs = |e: &[(A, B, V)]| -> Vec<((A, B), V)> {
        e.iter().map(|(a, b, v)| ((*a, *b), *v)).collect()
    };
    let old = old.map(pairs);
    diff(old.as_deref(), &pairs(new))
}

/// [`diff`] of key sets (routers).
pub(super) fn diff_keys<K: Ord + Copy>(old: Option<&[K]>, new: &[K]) -> Delta<K, ()> {
    let units = |e: &[K]| -> Vec<(K, ())> { e.iter().map(|k| (*k, ())).collect() };
    let old = old.map(units);
    diff(old.as_deref(), &units(new))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_held_writes_everything() {
        let d = diff(None, &[(2, 'b'), (1, 'a')]);
        assert_eq!(d.put, vec![(1, 'a'), (2, 'b')]);
        assert!(d.gone.is_empty());
    }

    #[test]
    fn only_what_changed_is_written_or_removed() {
        let old = [(1, 'a'), (2, 'b'), (3, 'c'), (5, 'e')];
        let new = [(2, 'b'), (3, 'x'), (4, 'd'), (6, 'f')];
        let d = diff(Some(&old[..]), &new);
        assert_eq!(d.put, vec![(3, 'x'), (4, 'd'), (6, 'f')]);
        assert_eq!(d.gone, vec![1, 5]);
        let same = diff(Some(&new[..]), &new);
        assert!(same.put.is_empty() && same.gone.is_empty());
    }

    #[test]
    fn unsorted_input_and_repeated_keys_are_diffed_as_map_writes() {
        let old = [(3, 'c'), (1, 'a')];
        let new = [(1, 'z'), (1, 'a'), (2, 'b')];
        let d = diff(Some(&old[..]), &new);
        assert_eq!(d.put, vec![(2, 'b')], "the last write of key 1 is 'a'");
        assert_eq!(d.gone, vec![3]);
    }

    #[test]
    fn triples_and_key_sets() {
        let d = diff3(Some(&[([10u8], 8u8, 1u32)][..]), &[([10], 16, 1)]);
        assert_eq!(d.put, vec![(([10], 16), 1)]);
        assert_eq!(d.gone, vec![([10], 8)]);
        let r = diff_keys(Some(&[1, 2][..]), &[2, 3]);
        assert_eq!((r.put, r.gone), (vec![(3, ())], vec![1]));
    }

    /// Applying the delta to the old map gives the new one, for every
    /// pair drawn from a small key space.
    #[test]
    fn applying_the_delta_gives_the_new_map() {
        use std::collections::BTreeMap;
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for _ in 0..500 {
            let mut draw = || -> Vec<(u8, u8)> {
                let n = next() % 12;
                (0..n)
                    .map(|_| ((next() % 16) as u8, (next() % 3) as u8))
                    .collect()
            };
            let (old, new) = (draw(), draw());
            let mut map: BTreeMap<u8, u8> = old.iter().copied().collect();
            let d = diff(Some(&old[..]), &new);
            for k in &d.gone {
                assert!(map.remove(k).is_some(), "removes only what is there");
            }
            map.extend(d.put.iter().copied());
            let want: BTreeMap<u8, u8> = new.iter().copied().collect();
            assert_eq!(map, want, "old {old:?} new {new:?}");
        }
    }
}
