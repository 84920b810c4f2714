//! The `stix2` feed format: a STIX 2.1 bundle. Every `indicator` whose
//! STIX pattern compares `ipv4-addr:value` or `ipv6-addr:value` with `=`
//! to an address or CIDR — alone, or joined with `OR` inside or between
//! observation expressions — is enforced; an indicator past its
//! `valid_until`, or `revoked`, is skipped; so is every other pattern
//! (`AND`, other operators or object types, qualifiers), counted and
//! named by its id. Nothing in a bundle can crash the parser.
//!
//! Written here rather than taken from a crate: the only STIX crates for
//! Rust are unmaintained and parse far more than the spec enforces; this
//! is the subset the spec names, and it refuses the rest explicitly.

use ipnet::IpNet;
use serde_json::Value;

use super::{plain::parse_written, Contents, Entry, FeedError};

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Open,
    Close,
    LParen,
    RParen,
    Or,
    Eq,
    Path(String),
    Str(String),
    Other(String),
}

fn tokens(p: &str) -> Result<Vec<Tok>, String> {
    let mut out = Vec::new();
    let mut it = p.chars().peekable();
    while let Some(&c) = it.peek() {
        match c {
            c if c.is_whitespace() => {
                it.next();
            }
            '[' | ']' | '(' | ')' => {
                it.next();
                out.push(match c {
                    '[' => Tok::Open,
                    ']' => Tok::Close,
                    '(' => Tok::LParen,
                    _ => Tok::RParen,
                });
            }
            '=' => {
                it.next();
                out.push(Tok::Eq);
            }
            '\'' => {
                it.next();
                let mut s = String::new();
                loop {
                    match it.next() {
                        None => return Err("an unterminated string".into()),
                        Some('\\') => s.extend(it.next()),
                        Some('\'') => break,
                        Some(c) => s.push(c),
                    }
                }
                out.push(Tok::Str(s));
            }
            _ => {
                let mut w = String::new();
                while let Some(&c) = it.peek() {
                    if c.is_whitespace() || "[]()='".contains(c) {
                        break;
                    }
                    w.push(c);
                    it.next();
                }
                if w.is_empty() {
                    // A lone operator character such as `<` or `!`.
                    w.extend(it.next());
                }
                // `!=`, `<=`, `>=` whole: their `=` stops the word.
                if matches!(w.as_str(), "!" | "<" | ">") && it.peek() == Some(&'=') {
                    w.extend(it.next());
                }
                out.push(match w.as_str() {
                    "OR" => Tok::Or,
                    _ if w.contains(':') => Tok::Path(w),
                    _ => Tok::Other(w),
                });
            }
        }
    }
    Ok(out)
}

/// The networks a pattern names, as written, or why it cannot be
/// enforced.
fn pattern_nets(p: &str) -> Result<Vec<(String, IpNet)>, String> {
    let toks = tokens(p)?;
    let mut nets = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut depth = 0i32;
    let mut i = 0;
    let mut expect_term = true;
    while i < toks.len() {
        match &toks[i] {
            Tok::Open | Tok::LParen if expect_term => {
                depth += 1;
                i += 1;
            }
            Tok::Path(path) if expect_term => {
                if !matches!(path.as_str(), "ipv4-addr:value" | "ipv6-addr:value") {
                    return Err(format!("compares `{path}`, not an IP address"));
                }
                match (toks.get(i + 1), toks.get(i + 2)) {
                    (Some(Tok::Eq), Some(Tok::Str(v))) => {
                        let net = parse_written(v)
                            .ok_or_else(|| format!("`{v}` is not an address or CIDR"))?;
                        let v6 = matches!(net, IpNet::V6(_));
                        if v6 != (path == "ipv6-addr:value") {
                            return Err(format!("`{v}` is not an address of {path}"));
                        }
                        // Named twice, it is one entry (and one skip). A
                        // set: a pattern of a million `OR`s must not take
                        // the refresher quadratic time.
                        if seen.insert(net) {
                            nets.push((v.clone(), net));
                        }
                    }
                    (Some(Tok::Eq), Some(Tok::Other(v))) => {
                        return Err(format!(
                            "compares with {v}, not a string: STIX values are in single quotes ('10.0.0.1')"
                        ))
                    }
                    (Some(Tok::Other(op)), _) | (Some(Tok::Path(op)), _) => {
                        return Err(format!("uses the operator `{op}`; only `=` is enforced"))
                    }
                    _ => return Err("a comparison is incomplete".into()),
                }
                i += 3;
                expect_term = false;
            }
            Tok::Close | Tok::RParen if !expect_term => {
                depth -= 1;
                if depth < 0 {
                    return Err("brackets do not match".into());
                }
                i += 1;
            }
            Tok::Or if !expect_term => {
                expect_term = true;
                i += 1;
            }
            Tok::Other(w) => {
                return Err(format!(
                    "uses `{w}`; only `=` comparisons joined by OR are enforced"
                ))
            }
            t => return Err(format!("is malformed near {t:?}")),
        }
    }
    if depth != 0 || expect_term || nets.is_empty() {
        return Err("is incomplete".into());
    }
    Ok(nets)
}

/// Unix seconds of a STIX timestamp.
fn unix(ts: &str) -> Option<i64> {
    let t = humantime::parse_rfc3339_weak(ts.trim_end_matches('Z')).ok()?;
    Some(t.duration_since(std::time::UNIX_EPOCH).ok()?.as_secs() as i64)
}

pub fn parse(text: &str, now: i64) -> Result<Contents, FeedError> {
    let v: Value = serde_json::from_str(text).map_err(|e| {
        FeedError::Parse(format!(
            "not JSON at line {}, column {}: {e}",
            e.line(),
            e.column()
        ))
    })?;
    let objects = v
        .get("objects")
        .and_then(Value::as_array)
        .ok_or_else(|| FeedError::Parse("not a STIX bundle: no `objects` array".into()))?;
    let mut c = Contents::default();
    for (i, o) in objects.iter().enumerate() {
        if o.get("type").and_then(Value::as_str) != Some("indicator") {
            continue;
        }
        let id = o
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("objects[{i}]"), str::to_owned);
        if o.get("revoked").and_then(Value::as_bool) == Some(true) {
            c.skip(format!("{id}: revoked"));
            continue;
        }
        let mut valid_until = None;
        if let Some(until) = o.get("valid_until").and_then(Value::as_str) {
            match unix(until) {
                Some(t) if t <= now => {
                    c.skip(format!("{id}: expired at {until}"));
                    continue;
                }
                Some(t) => valid_until = Some(t),
                None => {
                    c.skip(format!("{id}: valid_until `{until}` is not a timestamp"));
                    continue;
                }
            }
        }
        match o.get("pattern_type").and_then(Value::as_str) {
            None | Some("stix") => {}
            Some(other) => {
                c.skip(format!("{id}: a {other} pattern, not stix"));
                continue;
            }
        }
        let Some(pattern) = o.get("pattern").and_then(Value::as_str) else {
            c.skip(format!("{id}: no pattern"));
            continue;
        };
        match pattern_nets(pattern) {
            Ok(nets) => {
                if let Some(t) = valid_until {
                    c.expires = Some(c.expires.map_or(t, |e| e.min(t)));
                }
                for (written, net) in nets {
                    c.take(&written, net, &id, |net| Entry {
                        net,
                        indicator: Some(id.clone()),
                        line: None,
                    });
                }
            }
            Err(why) => c.skip(format!("{id}: its pattern {why}")),
        }
    }
    super::guard::drop_covering_together(&mut c);
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ind(id: &str, pattern: &str, extra: &str) -> String {
        format!(
            r#"{{"type":"indicator","spec_version":"2.1","id":"indicator--{id}","created":"2017-01-01T00:00:00.000Z","modified":"2017-01-01T00:00:00.000Z","pattern":{},"pattern_type":"stix","valid_from":"2017-01-01T00:00:00Z"{extra}}}"#,
            serde_json::to_string(pattern).unwrap()
        )
    }

    #[test]
    fn the_oasis_shapes_and_what_is_skipped() {
        let objects = [
            ind("a", "[ipv4-addr:value = '198.51.100.1/32']", ""),
            ind("b", "[ipv4-addr:value = '203.0.113.1' OR ipv4-addr:value = '203.0.113.2']", ""),
            ind("c", "[ipv6-addr:value = '2001:db8::/32'] OR [ipv4-addr:value = '192.0.2.0/24']", ""),
            ind("d", "[ipv4-addr:value = '10.0.0.1' AND ipv4-addr:value = '10.0.0.2']", ""),
            ind("e", "[file:hashes.'SHA-256' = 'aec070645fe53ee3b3763059376134f058cc337247c978add178b6ccdfb0019f']", ""),
            ind("f", "[ipv4-addr:value ISSUBSET '198.51.100.0/24']", ""),
            ind("g", "[ipv4-addr:value = '192.0.2.9']", r#","valid_until":"2018-01-01T00:00:00Z""#),
            ind("h", "[ipv4-addr:value = '192.0.2.10']", r#","revoked":true"#),
            ind("i", "[ipv4-addr:value = '192.0.2.11'] WITHIN 600 SECONDS", ""),
            ind("j", "[ipv4-addr:value = 'not-an-ip']", ""),
            ind("k", "[ipv6-addr:value = '10.0.0.1']", ""),
            ind("l", "[ipv4-addr:value = '192.0.2.12'", ""),
            ind("m", "([ipv4-addr:value = '192.0.2.13'])", ""),
            r#"{"type":"malware","id":"malware--x","name":"x"}"#.to_owned(),
            r#"{"type":"indicator","id":"indicator--n","pattern":"alert tcp any any","pattern_type":"snort"}"#.to_owned(),
            r#"{"type":"indicator","id":"indicator--o","pattern":42}"#.to_owned(),
            r#"{"type":"indicator","id":"indicator--p","pattern":"[ipv4-addr:value = '192.0.2.14\\']"}"#.to_owned(),
            ind("q", "[ipv4-addr:value != '192.0.2.15']", ""),
            // One network of an indicator too broad: the other stays.
            ind("r", "[ipv4-addr:value = '0.0.0.0/0' OR ipv4-addr:value = '192.0.2.16']", ""),
            ind("s", "[ipv4-addr:value = '192.168.0.0/16']", ""),
            // Named twice: one skip, one entry.
            ind("t", "[ipv4-addr:value = '10.0.0.0/8' OR ipv4-addr:value = '10.0.0.0/8']", ""),
            ind("u", "[ipv4-addr:value = '192.0.2.17'] OR [ipv4-addr:value = '192.0.2.17']", ""),
            ind("v", "[ipv4-addr:value = \"192.0.2.18\"]", ""),
        ];
        let bundle = format!(
            r#"{{"type":"bundle","id":"bundle--1","objects":[{}]}}"#,
            objects.join(",")
        );
        let now = 1_700_000_000;
        let c = parse(&bundle, now).unwrap();
        let got: Vec<(String, String)> = c
            .entries
            .iter()
            .map(|e| (e.indicator.clone().unwrap(), e.net.to_string()))
            .collect();
        let want = [
            ("indicator--a", "198.51.100.1/32"),
            ("indicator--b", "203.0.113.1/32"),
            ("indicator--b", "203.0.113.2/32"),
            ("indicator--c", "2001:db8::/32"),
            ("indicator--c", "192.0.2.0/24"),
            ("indicator--m", "192.0.2.13/32"),
            ("indicator--r", "192.0.2.16/32"),
            ("indicator--u", "192.0.2.17/32"),
        ];
        assert_eq!(
            got,
            want.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect::<Vec<_>>()
        );
        assert_eq!(c.skipped, 17, "{:#?}", c.problems);
        for (id, why) in [
            ("d", "AND"),
            ("e", "not an IP"),
            ("f", "ISSUBSET"),
            ("g", "expired"),
            ("h", "revoked"),
            ("i", "WITHIN"),
            ("j", "not an address"),
            ("k", "not an address of ipv6"),
            ("n", "snort"),
            ("o", "no pattern"),
            ("q", "the operator `!=`"),
            ("r", "`0.0.0.0/0` is broader than a /8"),
            ("s", "covers all of 192.168.0.0/16"),
            ("t", "covers all of 10.0.0.0/8"),
            ("v", "compares with \"192.0.2.18\", not a string"),
        ] {
            assert!(
                c.problems
                    .iter()
                    .any(|p| p.starts_with(&format!("indicator--{id}:")) && p.contains(why)),
                "{id}: {why} not in {:#?}",
                c.problems
            );
        }
        assert!(matches!(parse("{not json", now), Err(FeedError::Parse(_))));
        assert!(matches!(parse("[1,2]", now), Err(FeedError::Parse(_))));
    }
}
