//! The optional `identity` section (the spec's "Identity-based
//! clearance"): where RADIUS accounting is received and which roles move a
//! device to which segment.

use std::{net::SocketAddr, os::unix::fs::PermissionsExt, path::Path};

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{PolicyDoc, Problem};

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityDoc {
    pub radius_accounting: RadiusDoc,
    #[serde(default)]
    pub roles: Vec<RoleDoc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RadiusDoc {
    /// `address:port` to receive accounting on (UDP).
    pub listen: String,
    /// Addresses (or networks) of the NASes allowed to send accounting.
    pub clients: Vec<String>,
    /// A file holding the shared secret (one line; not world-readable).
    pub secret_file: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleDoc {
    pub name: String,
    /// The `Class` or `Filter-Id` value that carries this role.
    pub class: String,
    pub segment: String,
}

impl RadiusDoc {
    pub fn listen_addr(&self) -> Option<SocketAddr> {
        self.listen.parse().ok()
    }

    /// The clients as networks (an address is a /32 or /128).
    pub fn client_nets(&self) -> Vec<IpNet> {
        self.clients
            .iter()
            .filter_map(|c| parse_client(c))
            .collect()
    }
}

fn parse_client(c: &str) -> Option<IpNet> {
    c.parse::<IpNet>()
        .ok()
        .or_else(|| c.parse::<std::net::IpAddr>().ok().map(IpNet::from))
}

/// Problems of the `identity` section that the document alone shows.
pub(super) fn check(doc: &PolicyDoc) -> Vec<Problem> {
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

/// The shared secret: the file's first line, which must not be empty; the
/// file must not be readable by everyone.
pub fn read_secret(path: &Path) -> Result<Vec<u8>, String> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if meta.permissions().mode() & 0o004 != 0 {
        return Err(format!(
            "{} is readable by every user: `chmod o-r {}` (the RADIUS secret authenticates every session)",
            path.display(),
            path.display()
        ));
    }
    let text = std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let line: Vec<u8> = text
        .split(|b| *b == b'\n')
        .next()
        .unwrap_or_default()
        .to_vec();
    let line = line.strip_suffix(b"\r").map(<[u8]>::to_vec).unwrap_or(line);
    if line.is_empty() {
        return Err(format!(
            "{} holds no secret on its first line",
            path.display()
        ));
    }
    Ok(line)
}
