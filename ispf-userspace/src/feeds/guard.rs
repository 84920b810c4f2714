//! Networks a feed is never enforced for: a share of the address space,
//! or a whole block where a hospital's own devices live, by one entry or
//! by several together. An extension where the spec is silent (README,
//! "Networks a feed never enforces").

use ipnet::IpNet;

use super::{Contents, Entry};

/// Networks a hospital's own devices live in. A feed listing a whole one
/// (a bogon list taken for a blocklist, a typo's `/0`) would cut every
/// device there off from every other but the life-critical ones; a single
/// address or a narrower network inside is an indicator and stays.
pub const INTERNAL: &[&str] = &[
    "10.0.0.0/8",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "100.64.0.0/10",
    "169.254.0.0/16",
    "127.0.0.0/8",
    "224.0.0.0/4",
    "fc00::/7",
    // The half of fc00::/7 in use (RFC 4193): narrower than the block,
    // and every ULA device of a hospital is in it.
    "fd00::/8",
    "fe80::/10",
    "ff00::/8",
    "::1/128",
];

/// Why `net` cannot be a threat feed's entry, if it cannot: broader than
/// a /8 (IPv4) or a /16 (IPv6), or covering a whole network of
/// [`INTERNAL`]. Deny feeds pass traffic of life-critical segments, but
/// every other device of the hospital would lose its peers.
pub fn too_broad(net: &IpNet) -> Option<String> {
    let floor = match net {
        IpNet::V4(_) => 8,
        IpNet::V6(_) => 16,
    };
    if net.prefix_len() < floor {
        return Some(format!(
            "is broader than a /{floor}: a threat feed lists attackers, not a share of the address space"
        ));
    }
    INTERNAL
        .iter()
        .filter_map(|s| s.parse::<IpNet>().ok())
        .find(|inner| net.contains(inner))
        .map(|inner| {
            format!(
                "covers all of {inner}, where the hospital's own devices are: a feed never isolates a whole internal network (list its addresses or narrower networks)"
            )
        })
}

/// The first and last address of `net`, as numbers of its family.
pub(super) fn span(net: &IpNet) -> (u128, u128) {
    match net {
        IpNet::V4(n) => (
            u32::from(n.network()) as u128,
            u32::from(n.broadcast()) as u128,
        ),
        IpNet::V6(n) => (u128::from(n.network()), u128::from(n.broadcast())),
    }
}

/// Whether `nets` (networks inside `block`) together leave no address
/// of it out.
pub(super) fn tile(block: &IpNet, nets: &[IpNet]) -> bool {
    let mut spans: Vec<(u128, u128)> = nets.iter().map(span).collect();
    spans.sort_unstable();
    let (first, last) = span(block);
    let mut next = first;
    for (lo, hi) in spans {
        if lo > next {
            break;
        }
        next = next.max(hi.saturating_add(1));
    }
    next > last
}

/// Where an entry was read: its line or its indicator.
pub(super) fn at(e: &Entry) -> String {
    match (&e.indicator, e.line) {
        (Some(id), _) => id.clone(),
        (None, Some(l)) => format!("line {l}"),
        (None, None) => "an entry".into(),
    }
}

/// Skips the entries that only together cover a whole block of
/// [`INTERNAL`] (`10.0.0.0/9` and `10.128.0.0/9`): as one entry covering
/// it would be.
pub(super) fn drop_covering_together(c: &mut Contents) {
    for block in INTERNAL.iter().filter_map(|s| s.parse::<IpNet>().ok()) {
        let inside: Vec<usize> = (0..c.entries.len())
            .filter(|&i| block.contains(&c.entries[i].net))
            .collect();
        if inside.len() < 2 {
            continue;
        }
        let nets: Vec<IpNet> = inside.iter().map(|&i| c.entries[i].net).collect();
        if !tile(&block, &nets) {
            continue;
        }
        let named: Vec<String> = inside.iter().take(3).map(|&i| at(&c.entries[i])).collect();
        let more = match inside.len() {
            n if n > 3 => format!(" and {} more", n - 3),
            _ => String::new(),
        };
        let why = format!(
            "{}{more}: together cover all of {block}, where the hospital's own devices are: a feed never isolates a whole internal network; skipped",
            named.join(", ")
        );
        let n = inside.len() as u64;
        let mut drop = inside.into_iter().peekable();
        let mut i = 0;
        c.entries.retain(|_| {
            let gone = drop.peek() == Some(&i);
            if gone {
                drop.next();
            }
            i += 1;
            !gone
        });
        c.skip(why);
        c.skipped += n - 1;
        // A network skipped is not "enforced as" anything.
        c.notes
            .retain(|note| Contents::host_bits_cleared(note).is_none_or(|x| !nets.contains(&x)));
    }
}

#[cfg(test)]
mod tests {
    use super::super::plain;

    /// Two halves of 10.0.0.0/8 are the whole of it; with a gap, or
    /// outside any internal block, they are indicators.
    #[test]
    fn entries_that_together_cover_an_internal_block_are_skipped() {
        let c = plain::parse("203.0.113.7\n10.0.0.0/9\n10.128.0.0/10\n10.192.0.0/10\n");
        let nets: Vec<String> = c.entries.iter().map(|e| e.net.to_string()).collect();
        assert_eq!(nets, ["203.0.113.7/32"]);
        assert_eq!(c.skipped, 3);
        assert!(
            c.problems[0].starts_with("line 2, line 3, line 4: together cover all of 10.0.0.0/8"),
            "{:?}",
            c.problems
        );
        let gap = plain::parse("10.0.0.0/9\n10.128.0.0/10\n10.200.0.0/13\n");
        assert_eq!(gap.entries.len(), 3, "{:?}", gap.problems);
        let public = plain::parse("11.0.0.0/9\n11.128.0.0/9\n");
        assert_eq!(public.entries.len(), 2);
        // Written with host bits: skipped, and not also "enforced as".
        let c = plain::parse("10.1.2.3/9\n10.128.0.0/9\n203.0.113.9/24\n");
        assert_eq!(c.entries.len(), 1);
        assert_eq!(c.notes.len(), 1, "{:?}", c.notes);
        assert!(
            c.notes[0].contains("enforced as 203.0.113.0/24"),
            "{:?}",
            c.notes
        );
        // A skipped line is listed before the notes that came first.
        let many: String = (1..=25).map(|i| format!("203.0.{i}.9/24\n")).collect();
        let c = plain::parse(&format!("{many}10.0.0.0/8\n"));
        assert!(c.report()[0].starts_with("line 26:"), "{:?}", c.report());
    }
}
