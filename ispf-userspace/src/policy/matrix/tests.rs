//! The pairs the matrix visits: the same rows and entries as visiting
//! every pair, for rules of every wildcard form.

use std::path::Path;

use super::*;

/// The matrix as it was built before pairs were chosen: every pair of
/// segments looked up.
fn every_pair(p: &Policy) -> Matrix {
    let mut m = Matrix::default();
    let classes = PortClasses::new(&p.rules);
    let mut by_pair: HashMap<(Option<u16>, Option<u16>), Vec<&Rule>> = HashMap::new();
    for r in &p.rules {
        by_pair.entry((r.from, r.to)).or_default().push(r);
    }
    let empty: Vec<&Rule> = Vec::new();
    let get = |k| by_pair.get(&k).unwrap_or(&empty).as_slice();
    for &src in &p.ids {
        for &dst in &p.ids {
            let levels = [
                get((Some(src), Some(dst))),
                get((Some(src), None)),
                get((None, Some(dst))),
                get((None, None)),
            ];
            if levels.iter().any(|l| !l.is_empty()) {
                compile_pair(&mut m, &classes, src, dst, &levels);
            }
        }
    }
    pack_rows(&mut m);
    m
}

fn policy(default: &str, rules: &[(&str, &str, &str)]) -> Policy {
    let segments: Vec<String> = (0..12)
        .map(|i| format!(r#"{{"name": "s{i}", "vlans": [{}]}}"#, i + 10))
        .collect();
    let rules: Vec<String> = rules
        .iter()
        .enumerate()
        .map(|(i, (from, to, action))| {
            format!(
                r#"{{"id": "r{i}", "from": "{from}", "to": "{to}", "proto": "tcp", "ports": [{}], "action": "{action}"}}"#,
                100 + i
            )
        })
        .collect();
    let text = format!(
        r#"{{"version": 1, "defaults": {{"default_action": "{default}", "unknown_source": "s0"}},
            "segments": [{}], "devices": [], "rules": [{}]}}"#,
        segments.join(","),
        rules.join(",")
    );
    Policy::from_str(&text, Path::new("matrix-test.json")).unwrap()
}

#[test]
fn the_pairs_visited_give_the_rows_of_every_pair() {
    let cases: &[&[(&str, &str, &str)]] = &[
        &[],
        &[("s1", "s2", "allow")],
        &[
            ("s1", "s2", "allow"),
            ("s3", "s2", "deny"),
            ("s11", "s0", "allow"),
        ],
        &[("*", "s4", "allow"), ("s5", "s6", "allow")],
        &[
            ("s7", "*", "deny"),
            ("s1", "s2", "allow"),
            ("*", "s3", "allow"),
        ],
        &[("*", "*", "deny"), ("s1", "s2", "allow")],
        &[
            ("s2", "s1", "allow"),
            ("*", "s1", "deny"),
            ("s9", "*", "allow"),
            ("*", "s9", "allow"),
        ],
    ];
    for default in ["allow", "deny"] {
        for rules in cases {
            let p = policy(default, rules);
            // Ids in the reverse of the segments' order, as a reload that
            // keeps an older file's ids may leave them.
            let mut permuted = policy(default, rules);
            let reversed = p
                .segment_ids()
                .into_iter()
                .map(|(name, id)| (name, 100 - id))
                .collect();
            permuted.keep_ids(&reversed);
            for p in [p, permuted] {
                let (got, want) = (rule_matrix(&p), every_pair(&p));
                assert_eq!(got.rows, want.rows, "{default} {rules:?} {:?}", p.ids);
                assert_eq!(got.policy, want.policy, "{default} {rules:?}");
                if !rules.is_empty() && default == "deny" {
                    assert!(!got.rows.is_empty(), "{rules:?} compiled to nothing");
                }
            }
        }
    }
}
