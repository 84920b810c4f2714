//! Policy: the document (`model`), its validation into resolved form (this
//! module), and its compilation into map entries (`compile`).

pub mod compile;
pub mod diff;
pub mod model;
mod validate;

use std::{
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

use ipnet::IpNet;
pub use model::*;
pub use validate::parse_mac;

/// One problem in a policy document, at a JSON path such as `rules[3].ports[0]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub path: String,
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read policy {}: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Not JSON, or JSON of the wrong shape.
    #[error("{}: {path}: {message}", file.display())]
    Syntax {
        file: PathBuf,
        path: String,
        message: String,
    },
    /// Well-formed but violates the specification.
    #[error("{} is not a valid policy ({} problem{}):\n{}", file.display(), problems.len(),
        if problems.len() == 1 { "" } else { "s" },
        problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        file: PathBuf,
        problems: Vec<Problem>,
    },
}

#[derive(Debug, Clone)]
pub struct Segment {
    pub name: String,
    pub vlans: Vec<u16>,
    pub subnets: Vec<IpNet>,
    pub monitor: bool,
    pub intra_deny: bool,
    pub life_critical: bool,
}

#[derive(Debug, Clone)]
pub struct Device {
    pub name: String,
    pub mac: Option<[u8; 6]>,
    pub ipv4: Vec<Ipv4Addr>,
    pub ipv6: Vec<Ipv6Addr>,
    /// 0: the MAC identity holds on any VLAN.
    pub vlan: u16,
    pub segment: u16,
}

/// `(family, protocol)` pairs a rule's `proto` stands for.
pub type ProtoSet = Vec<(u8, u8)>;

#[derive(Debug, Clone)]
pub struct Rule {
    /// Position in the `rules` array.
    pub index: usize,
    /// `None` for `*`.
    pub from: Option<u16>,
    pub to: Option<u16>,
    pub protos: Option<ProtoSet>,
    /// Inclusive ranges.
    pub ports: Option<Vec<(u16, u16)>>,
    pub allow: bool,
}

/// A validated policy with names resolved to segment ids (1-based, in
/// document order, then `world` and the unknown-source segment if unlisted).
#[derive(Debug, Clone)]
pub struct Policy {
    pub doc: PolicyDoc,
    pub segments: Vec<Segment>,
    pub world: u16,
    pub unknown: u16,
    pub devices: Vec<Device>,
    pub routers: Vec<[u8; 6]>,
    pub rules: Vec<Rule>,
}

impl Policy {
    pub fn from_file(file: &Path) -> Result<Self, PolicyError> {
        let text = std::fs::read_to_string(file).map_err(|source| PolicyError::Read {
            file: file.to_owned(),
            source,
        })?;
        Self::from_str(&text, file)
    }

    /// Parses and validates `text`; `file` only names the source in errors.
    pub fn from_str(text: &str, file: &Path) -> Result<Self, PolicyError> {
        let de = &mut serde_json::Deserializer::from_str(text);
        let doc: PolicyDoc = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = match e.path().to_string() {
                p if p == "?" || p == "." => "(document)".to_owned(),
                p => p,
            };
            let inner = e.into_inner();
            let message = if inner.is_syntax() || inner.is_eof() {
                format!("{inner} (not valid JSON)")
            } else {
                inner.to_string()
            };
            PolicyError::Syntax {
                file: file.to_owned(),
                path,
                message,
            }
        })?;
        Self::from_doc(doc).map_err(|problems| PolicyError::Invalid {
            file: file.to_owned(),
            problems,
        })
    }

    pub fn from_doc(doc: PolicyDoc) -> Result<Self, Vec<Problem>> {
        validate::validate(doc)
    }

    pub fn segment_name(&self, id: u16) -> &str {
        match id {
            0 => "-",
            id => self
                .segments
                .get(id as usize - 1)
                .map_or("-", |s| s.name.as_str()),
        }
    }

    pub fn segment_id(&self, name: &str) -> Option<u16> {
        self.segments
            .iter()
            .position(|s| s.name == name)
            .map(|i| i as u16 + 1)
    }
}
