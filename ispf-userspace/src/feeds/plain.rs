//! The `plain` feed format: one IPv4/IPv6 address or CIDR a line; `#`
//! starts a comment; blank lines are ignored. A line that is none of these
//! is skipped and reported with its number.

use ipnet::IpNet;

use super::{Contents, Entry};

pub fn parse(text: &str) -> Contents {
    read(text).0
}

/// [`parse`], and how many lines were neither an address, a network, a
/// comment nor blank (not those skipped as too broad to be a threat).
pub fn read(text: &str) -> (Contents, u64) {
    let mut c = Contents::default();
    let mut unreadable = 0;
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        match parse_written(line) {
            Some(net) => c.take(line, net, &format!("line {}", i + 1), |net| Entry {
                net,
                indicator: None,
                line: Some(i as u32 + 1),
            }),
            None => {
                unreadable += 1;
                c.skip(format!(
                    "line {}: `{}` is not an IPv4/IPv6 address or CIDR",
                    i + 1,
                    line.chars().take(60).collect::<String>()
                ))
            }
        }
    }
    super::guard::drop_covering_together(&mut c);
    (c, unreadable)
}

/// An address (as a host network) or a CIDR, with host bits cleared.
pub fn parse_net(s: &str) -> Option<IpNet> {
    parse_written(s).map(|n| n.trunc())
}

/// An address (as a host network) or a CIDR as written, host bits and
/// all.
pub(super) fn parse_written(s: &str) -> Option<IpNet> {
    let s = s.trim();
    if let Ok(n) = s.parse::<IpNet>() {
        return Some(n);
    }
    s.parse::<std::net::IpAddr>().ok().map(IpNet::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_cidrs_comments_and_bad_lines() {
        let c = parse(
            "# blocklist\n203.0.113.7\n\n198.51.100.0/24 # a /24\n2001:db8::1\n2001:db8:1::/48\nnot an address\n10.0.0.300\n10.1.2.3/33\n",
        );
        let nets: Vec<String> = c.entries.iter().map(|e| e.net.to_string()).collect();
        assert_eq!(
            nets,
            [
                "203.0.113.7/32",
                "198.51.100.0/24",
                "2001:db8::1/128",
                "2001:db8:1::/48"
            ]
        );
        assert_eq!(c.entries[1].line, Some(4));
        assert_eq!(c.skipped, 3);
        assert!(c.problems[0].starts_with("line 7:"), "{:?}", c.problems);
        // Host bits are cleared, as the kernel's trie would.
        assert_eq!(parse_net("10.1.2.3/8").unwrap().to_string(), "10.0.0.0/8");
    }

    /// A feed never takes a whole internal network or a share of the
    /// address space; an indicator inside one stays, and host bits are
    /// said.
    #[test]
    fn whole_internal_networks_and_the_address_space_are_skipped() {
        let c = parse(
            "0.0.0.0/0\n10.0.0.0/8\n192.168.0.0/15\n128.0.0.0/1\n::/0\nfd00::/8\n2000::/3\n\
             10.20.0.7\n10.20.1.0/24\n203.0.113.9/24\n224.0.0.0/4\n198.18.0.0/15\n",
        );
        let nets: Vec<String> = c.entries.iter().map(|e| e.net.to_string()).collect();
        assert_eq!(
            nets,
            [
                "10.20.0.7/32",
                "10.20.1.0/24",
                "203.0.113.0/24",
                "198.18.0.0/15"
            ]
        );
        assert_eq!(c.skipped, 8);
        assert!(
            c.problems[0].starts_with("line 1: `0.0.0.0/0` is broader"),
            "{:?}",
            c.problems
        );
        assert!(
            c.problems[1].contains("covers all of 10.0.0.0/8"),
            "{:?}",
            c.problems
        );
        assert!(
            c.notes
                .iter()
                .any(|p| p
                    == "line 10: `203.0.113.9/24` has host bits set; enforced as 203.0.113.0/24"),
            "{:?}",
            c.problems
        );
        // What `ispf feeds` drops when the policy skips that network.
        let cleared: Vec<_> = c
            .notes
            .iter()
            .filter_map(|n| Contents::host_bits_cleared(n))
            .collect();
        assert_eq!(cleared, ["203.0.113.0/24".parse::<IpNet>().unwrap()]);
        assert_eq!(Contents::host_bits_cleared(&c.problems[0]), None);
    }
}
