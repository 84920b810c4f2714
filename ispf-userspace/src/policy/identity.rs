//! The optional `identity` section (the spec's "Identity-based
//! clearance"): where RADIUS accounting is received and which roles move a
//! device to which segment.

use std::{net::SocketAddr, os::unix::fs::PermissionsExt, path::Path};

use ipnet::IpNet;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

pub(super) fn parse_client(c: &str) -> Option<IpNet> {
    c.parse::<IpNet>()
        .ok()
        .or_else(|| c.parse::<std::net::IpAddr>().ok().map(IpNet::from))
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
