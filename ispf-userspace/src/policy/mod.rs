//! Policy: the document (`model`), its validation into resolved form (this
//! module), and its compilation into map entries (`compile`).

pub mod compile;
pub mod diff;
mod diff_settings;
pub mod identity;
mod index;
pub mod load;
mod matrix;
pub mod model;
mod rules;
mod section_checks;
pub mod sections;
mod validate;

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fmt,
    net::{Ipv4Addr, Ipv6Addr},
    path::{Path, PathBuf},
};

pub use identity::{IdentityDoc, RadiusDoc, RoleDoc};
pub use index::DeviceIndex;
use ipnet::IpNet;
pub use model::*;
pub use sections::*;
pub use validate::{is_device_mac, parse_mac};

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

/// Every problem validation finds, collected rather than stopping at the
/// first.
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
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

/// A validated policy with names resolved to segment ids. Segments are in
/// document order, then `world` and the unknown-source segment if
/// unlisted; their ids are 1-based positions unless [`Policy::keep_ids`]
/// carried them over from the policy this one replaces.
#[derive(Debug, Clone)]
pub struct Policy {
    pub doc: PolicyDoc,
    /// SHA-256 of the document's text as read (of its canonical JSON when
    /// built from a value).
    pub sha256: [u8; 32],
    /// `ids[i]` is the id of `segments[i]`.
    pub ids: Vec<u16>,
    pub segments: Vec<Segment>,
    pub world: u16,
    pub unknown: u16,
    pub devices: Vec<Device>,
    /// How many of `devices`, from the first, the policy file registers;
    /// the rest are entries runtime decisions added for MACs it does not.
    pub file_devices: usize,
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
            // A name serde quotes back can be megabytes long.
            PolicyError::Syntax {
                file: file.to_owned(),
                path: crate::clip(&path, 512),
                message: crate::clip(&message, 1024),
            }
        })?;
        let mut p = validate::validate(doc).map_err(|problems| PolicyError::Invalid {
            file: file.to_owned(),
            problems,
        })?;
        p.sha256 = sha256(text.as_bytes());
        Ok(p)
    }

    pub fn from_doc(doc: PolicyDoc) -> Result<Self, Vec<Problem>> {
        let canonical = serde_json::to_vec(&doc).unwrap_or_default();
        let mut p = validate::validate(doc)?;
        p.sha256 = sha256(&canonical);
        Ok(p)
    }

    /// [`Self::from_doc`] for a caller that sets [`Self::sha256`] itself
    /// (the file with runtime decisions is known by the file's hash and
    /// the decisions'): serialising a 100k-device document only to hash it
    /// was a sixth of every decision's cost.
    pub fn from_doc_unhashed(doc: PolicyDoc) -> Result<Self, Vec<Problem>> {
        validate::validate(doc)
    }

    /// [`Self::sha256`] in hex.
    pub fn sha256_hex(&self) -> String {
        hex(&self.sha256)
    }

    pub fn segment_name(&self, id: u16) -> &str {
        self.segment(id).map_or("-", |s| s.name.as_str())
    }

    /// Every segment's subnets with its segment's id, most specific
    /// first: the first that holds an address is where the datapath's
    /// longest-prefix match places it (validation refuses the same subnet
    /// in two segments, so there is no tie).
    pub fn subnets_longest_first(&self) -> Vec<(IpNet, u16)> {
        let mut v: Vec<(IpNet, u16)> = self
            .segments
            .iter()
            .zip(&self.ids)
            .flat_map(|(s, id)| s.subnets.iter().map(move |n| (*n, *id)))
            .collect();
        v.sort_by_key(|(n, _)| std::cmp::Reverse(n.prefix_len()));
        v
    }

    pub fn segment(&self, id: u16) -> Option<&Segment> {
        let i = self.ids.iter().position(|x| *x == id)?;
        self.segments.get(i)
    }

    pub fn segment_id(&self, name: &str) -> Option<u16> {
        let i = self.segments.iter().position(|s| s.name == name)?;
        Some(self.ids[i])
    }

    /// Whether the segment named `name` is life-critical (false for a
    /// name this policy does not have).
    pub fn life_critical_named(&self, name: &str) -> bool {
        self.segments
            .iter()
            .any(|s| s.name == name && s.life_critical)
    }

    /// Every segment's id by name.
    pub fn segment_ids(&self) -> BTreeMap<String, u16> {
        self.segments
            .iter()
            .zip(&self.ids)
            .map(|(s, id)| (s.name.clone(), *id))
            .collect()
    }

    /// Gives every segment the id it has in `keep` (the ids of the policy
    /// this one replaces), and segments new to it ids no segment of `keep`
    /// has. The datapath remembers segment ids in connection state and
    /// counters, so a reload that adds a segment at the top of the file
    /// must not renumber the others. Returns the ids of `keep` this policy
    /// no longer has (see [`Datapath::end_segments`](crate::datapath::Datapath::end_segments)).
    pub fn keep_ids(&mut self, keep: &BTreeMap<String, u16>) -> Vec<u16> {
        let taken: BTreeSet<u16> = keep.values().copied().collect();
        let mut fresh = (1u16..).filter(|id| !taken.contains(id));
        let new_ids: Vec<u16> = self
            .segments
            .iter()
            .map(|s| match keep.get(&s.name) {
                Some(id) => *id,
                None => fresh.next().unwrap_or(u16::MAX),
            })
            .collect();
        if new_ids
            .iter()
            .any(|id| *id as u32 >= ispf_common::MAX_SEGMENTS)
        {
            // Not enough ids to keep them all (thousands of segments): fall
            // back to positions, ending every flow rather than misnaming one.
            return keep.values().copied().collect();
        }
        // Everything validation resolved refers to positional ids.
        let old_ids = std::mem::replace(&mut self.ids, new_ids);
        let map: HashMap<u16, u16> = old_ids.into_iter().zip(self.ids.clone()).collect();
        let re = |id: u16| map.get(&id).copied().unwrap_or(id);
        self.world = re(self.world);
        self.unknown = re(self.unknown);
        for d in &mut self.devices {
            d.segment = re(d.segment);
        }
        for r in &mut self.rules {
            r.from = r.from.map(re);
            r.to = r.to.map(re);
        }
        keep.iter()
            .filter(|(name, _)| self.segment_id(name).is_none())
            .map(|(_, id)| *id)
            .collect()
    }

    /// The largest segment id in use.
    pub fn max_segment_id(&self) -> u16 {
        self.ids.iter().copied().max().unwrap_or(0)
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(segments: &[&str], rule: (&str, &str)) -> Policy {
        let segs: Vec<String> = segments
            .iter()
            .map(|s| format!(r#"{{ "name": "{s}" }}"#))
            .collect();
        let text = format!(
            r#"{{ "version": 1, "segments": [{}],
                "devices": [{{ "name": "d", "ipv4": "10.0.0.1", "segment": "{}" }}],
                "rules": [{{ "from": "{}", "to": "{}", "action": "allow" }}] }}"#,
            segs.join(","),
            rule.0,
            rule.0,
            rule.1
        );
        Policy::from_str(&text, Path::new("t.json")).expect("valid")
    }

    #[test]
    fn reloads_keep_segment_ids() {
        let old = policy(&["a", "b", "c"], ("a", "b"));
        let (a, b, c) = (
            old.segment_id("a").unwrap(),
            old.segment_id("b").unwrap(),
            old.segment_id("c").unwrap(),
        );
        // `x` is new and first in the file, `c` is gone.
        let mut new = policy(&["x", "a", "b"], ("b", "a"));
        let gone = new.keep_ids(&old.segment_ids());
        assert_eq!(gone, vec![c]);
        assert_eq!(
            (new.segment_id("a"), new.segment_id("b")),
            (Some(a), Some(b))
        );
        let x = new.segment_id("x").unwrap();
        assert!(!old.segment_ids().values().any(|id| *id == x));
        assert_eq!(new.segment_name(x), "x");
        assert_eq!(new.segment_name(c), "-");
        // Everything that referred to positions now refers to the kept ids.
        assert_eq!(new.devices[0].segment, b);
        assert_eq!((new.rules[0].from, new.rules[0].to), (Some(b), Some(a)));
        assert_eq!(new.world, old.world);
        assert_eq!(new.segment_name(new.unknown), "quarantine");
    }

    #[test]
    fn too_many_segments_are_refused_not_a_crash() {
        let segs: Vec<String> = (0..65_536)
            .map(|i| format!(r#"{{ "name": "s{i}" }}"#))
            .collect();
        let text = format!(r#"{{ "version": 1, "segments": [{}] }}"#, segs.join(","));
        let Err(PolicyError::Invalid { problems, .. }) =
            Policy::from_str(&text, Path::new("t.json"))
        else {
            panic!("invalid");
        };
        assert!(
            problems
                .iter()
                .any(|p| p.path == "segments" && p.message.contains("at most 4095")),
            "{problems:?}"
        );
    }

    #[test]
    fn duplicate_addresses_name_both_places() {
        let text = r#"{ "version": 1, "segments": [{ "name": "a" }],
            "devices": [
              { "name": "d0", "ipv4": ["10.0.0.1", "10.0.0.1"], "segment": "a" },
              { "name": "d1", "ipv4": "10.0.0.2", "segment": "a" },
              { "name": "d2", "ipv4": "10.0.0.2", "segment": "nope" }] }"#;
        let Err(PolicyError::Invalid { problems, .. }) =
            Policy::from_str(text, Path::new("t.json"))
        else {
            panic!("invalid");
        };
        let msgs: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
        // One device listing an address twice is not a clash with itself.
        assert_eq!(msgs.len(), 2, "{msgs:?}");
        assert!(msgs[0].contains("devices[2].segment"), "{msgs:?}");
        assert!(
            msgs[1].contains("devices[2].ipv4")
                && msgs[1].contains("duplicate address 10.0.0.2: already used at devices[1]"),
            "{msgs:?}"
        );
    }
}
