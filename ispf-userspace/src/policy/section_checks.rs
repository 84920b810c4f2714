//! Problems of the optional sections (`feeds`, `detection`, `identity`),
//! at their JSON paths. The sections' types live with the document
//! (`sections`, `identity`); checking them needs the whole document (a
//! role's segment must exist), so the checks live here, apart from it.

use std::path::Path;

use super::{
    identity::{parse_client, read_secret},
    PolicyDoc, Problem,
};

/// Problems of the `feeds` and `detection` sections, at their JSON paths.
pub(super) fn feeds_and_detection(doc: &PolicyDoc) -> Vec<Problem> {
    let mut out = Vec::new();
    let mut add = |path: String, message: String| out.push(Problem { path, message });
    if doc.feeds.len() > ispf_common::MAX_FEEDS as usize {
        add(
            "feeds".into(),
            format!(
                "{} feeds; at most {} are supported: merge some",
                doc.feeds.len(),
                ispf_common::MAX_FEEDS
            ),
        );
    }
    let mut names = std::collections::HashMap::new();
    for (i, f) in doc.feeds.iter().enumerate() {
        let path = format!("feeds[{i}]");
        if f.name.is_empty() || f.name.len() > 64 || f.name.chars().any(|c| c.is_control()) {
            add(
                format!("{path}.name"),
                "a feed needs a name of 1-64 printable characters".into(),
            );
        }
        if let Some(first) = names.insert(f.name.as_str(), i) {
            add(
                format!("{path}.name"),
                format!("feed `{}` is already defined at feeds[{first}]", f.name),
            );
        }
        let s = f.source.trim();
        let url = s.starts_with("http://") || s.starts_with("https://");
        if s.is_empty() || (!url && !s.starts_with('/')) {
            add(
                format!("{path}.source"),
                format!(
                    "`{}` is neither an absolute file path nor an http(s) URL",
                    f.source
                ),
            );
        }
        if f.refresh_s == 0 {
            add(
                format!("{path}.refresh_s"),
                "must be at least 1 second".into(),
            );
        }
    }
    if let Some(d) = &doc.detection {
        if d.scan.distinct_targets == 0 {
            add(
                "detection.scan.distinct_targets".into(),
                "must be at least 1".into(),
            );
        }
        if d.scan.window_s == 0 {
            add(
                "detection.scan.window_s".into(),
                "must be at least 1 second".into(),
            );
        }
        if d.quarantine_ttl_s == 0 {
            add(
                "detection.quarantine_ttl_s".into(),
                "must be at least 1 second".into(),
            );
        }
    }
    out
}

/// Problems of the `identity` section that the document alone shows.
pub(super) fn identity(doc: &PolicyDoc) -> Vec<Problem> {
    let Some(id) = &doc.identity else {
        return Vec::new();
    };
    let mut out = Vec::new();
    let mut add = |path: String, message: String| out.push(Problem { path, message });
    let r = &id.radius_accounting;
    if r.listen_addr().is_none() {
        add(
            "identity.radius_accounting.listen".into(),
            format!("`{}` is not address:port (e.g. 127.0.0.1:1813)", r.listen),
        );
    }
    if r.clients.is_empty() {
        add(
            "identity.radius_accounting.clients".into(),
            "no clients: list the address of every switch or wireless controller that sends accounting".into(),
        );
    }
    for (i, c) in r.clients.iter().enumerate() {
        if parse_client(c).is_none() {
            add(
                format!("identity.radius_accounting.clients[{i}]"),
                format!("`{c}` is not an IP address or network"),
            );
        }
    }
    if !r.secret_file.starts_with('/') {
        add(
            "identity.radius_accounting.secret_file".into(),
            format!("`{}` is not an absolute path", r.secret_file),
        );
    }
    let mut names = std::collections::HashMap::new();
    let mut classes = std::collections::HashMap::new();
    for (i, role) in id.roles.iter().enumerate() {
        let path = format!("identity.roles[{i}]");
        if role.name.is_empty() {
            add(format!("{path}.name"), "a role needs a name".into());
        }
        if let Some(first) = names.insert(role.name.as_str(), i) {
            add(
                format!("{path}.name"),
                format!(
                    "role `{}` is already defined at identity.roles[{first}]",
                    role.name
                ),
            );
        }
        if role.class.is_empty() {
            add(
                format!("{path}.class"),
                "a role needs the Class or Filter-Id value that carries it".into(),
            );
        }
        if let Some(first) = classes.insert(role.class.as_str(), i) {
            add(
                format!("{path}.class"),
                format!(
                    "class `{}` already carries identity.roles[{first}]",
                    role.class
                ),
            );
        }
        if !doc.segments.iter().any(|s| s.name == role.segment) {
            add(
                format!("{path}.segment"),
                format!(
                    "no segment `{}`; segments are: {}",
                    role.segment,
                    doc.segments
                        .iter()
                        .map(|s| s.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
        }
    }
    out
}

/// Problems of the secret file, checked when a file is read (`check`,
/// `run`, `reload`), not when decisions recompute the document.
pub fn check_secret(doc: &PolicyDoc) -> Vec<Problem> {
    let Some(id) = &doc.identity else {
        return Vec::new();
    };
    let file = &id.radius_accounting.secret_file;
    let path = "identity.radius_accounting.secret_file".to_owned();
    match read_secret(Path::new(file)) {
        Ok(_) => Vec::new(),
        Err(message) => vec![Problem { path, message }],
    }
}
