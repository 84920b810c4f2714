//! MAC vendors from the IEEE registries that Debian's `ieee-data` package
//! installs (MA-L, MA-M and MA-S assignments), longest assignment first.
//! No hand-written table: a vendor not in the registry is unknown.

use std::{collections::HashMap, path::Path};

pub const IEEE_DATA: &str = "/usr/share/ieee-data";

#[derive(Default)]
pub struct Vendors {
    /// By prefix length in bits (24, 28, 36): prefix -> organisation.
    by_len: Vec<(u32, HashMap<u64, String>)>,
}

/// The fields of one CSV line (quoted fields may hold commas).
fn fields(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

impl Vendors {
    /// Loads the registries under `dir`; files that are missing are
    /// skipped (the vendor is then unknown, never wrong).
    pub fn load(dir: &Path) -> Self {
        let mut by_len = Vec::new();
        for (file, bits) in [("oui36.csv", 36), ("mam.csv", 28), ("oui.csv", 24)] {
            let Ok(text) = std::fs::read_to_string(dir.join(file)) else {
                continue;
            };
            let mut m = HashMap::new();
            for line in text.lines().skip(1) {
                let f = fields(line);
                let (Some(hex), Some(org)) = (f.get(1), f.get(2)) else {
                    continue;
                };
                if let Ok(prefix) = u64::from_str_radix(hex.trim(), 16) {
                    m.insert(prefix, org.trim().to_owned());
                }
            }
            by_len.push((bits, m));
        }
        Self { by_len }
    }

    /// Whether any registry was found.
    pub fn loaded(&self) -> bool {
        self.by_len.iter().any(|(_, m)| !m.is_empty())
    }

    /// The organisation the MAC's prefix is assigned to. Locally
    /// administered addresses belong to no one.
    pub fn vendor(&self, mac: &[u8; 6]) -> Option<&str> {
        if mac[0] & 0x02 != 0 {
            return None;
        }
        let word = mac.iter().fold(0u64, |a, b| a << 8 | *b as u64);
        self.by_len
            .iter()
            .find_map(|(bits, m)| m.get(&(word >> (48 - bits))).map(String::as_str))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_assignment_wins_and_quotes_are_fields() {
        let d = std::env::temp_dir().join(format!("ispf-oui-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("oui.csv"),
            "Registry,Assignment,Organization Name,Organization Address\nMA-L,00D0EF,IGT,Reno\nMA-L,001122,\"Pumps, Inc.\",X\n",
        )
        .unwrap();
        std::fs::write(
            d.join("oui36.csv"),
            "Registry,Assignment,Organization Name,Organization Address\nMA-S,00D0EF123,Tiny Maker,Y\n",
        )
        .unwrap();
        let v = Vendors::load(&d);
        assert!(v.loaded());
        assert_eq!(v.vendor(&[0x00, 0x11, 0x22, 1, 2, 3]), Some("Pumps, Inc."));
        assert_eq!(
            v.vendor(&[0x00, 0xd0, 0xef, 0x12, 0x34, 5]),
            Some("Tiny Maker")
        );
        assert_eq!(v.vendor(&[0x00, 0xd0, 0xef, 0x99, 0, 0]), Some("IGT"));
        assert_eq!(
            v.vendor(&[0x02, 0x11, 0x22, 1, 2, 3]),
            None,
            "locally administered"
        );
        assert_eq!(v.vendor(&[0x00, 0x99, 0x99, 1, 2, 3]), None);
    }

    #[test]
    fn the_debian_registry_names_a_known_vendor() {
        let v = Vendors::load(Path::new(IEEE_DATA));
        if !Path::new(IEEE_DATA).join("oui.csv").exists() {
            panic!("{IEEE_DATA}/oui.csv is missing: install Debian's ieee-data (cargo xtask setup does)");
        }
        // 00:1B:21 is Intel's.
        assert!(v
            .vendor(&[0x00, 0x1b, 0x21, 0, 0, 1])
            .is_some_and(|o| o.contains("Intel")));
    }
}
