//! What survives a controller restart besides the pins, in the run
//! directory: the policies the datapath may be enforcing (each as the
//! verbatim file it came from, by SHA-256) and the segment ids they were
//! compiled with. Every file is written to a temporary, synced and renamed,
//! so a crash leaves the old file or the new one, never an empty one.
//!
//! A reload records the new policy *before* it is applied and forgets the
//! old one after, so whatever the kernel enforces when the controller dies
//! (the policy hash in the pinned meta map), the run directory has it.

use std::{
    collections::BTreeMap,
    fs,
    io::Write,
    os::unix::fs::OpenOptionsExt,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use crate::{control::InterfaceStatus, decisions::Decision};

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("writing {}: {source}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{} is unreadable ({message}); it is rewritten at the next reload", path.display())]
    Corrupt { path: PathBuf, message: String },
}

/// One policy the datapath may be enforcing.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Enforced {
    /// SHA-256 (hex) of the policy file's bytes.
    pub sha256: String,
    /// The file it was read from.
    pub path: PathBuf,
    /// RFC 3339.
    pub applied_at: String,
    /// The segment ids it was compiled with (kept across reloads, so not
    /// the positions in the file).
    pub segment_ids: BTreeMap<String, u16>,
    /// The runtime decisions applied over the file, as they held then.
    #[serde(default)]
    pub decisions: Vec<Decision>,
    /// What the datapath's meta map says is enforced: the file's hash
    /// combined with the decisions' ([`crate::decisions::enforced_sha256`]).
    /// Absent: the file alone.
    #[serde(default)]
    pub meta_sha256: Option<String>,
    /// How the decisions placed the file's entries: [`PLACEMENT`] once an
    /// unforced quarantine leaves a life-critical entry by address alone
    /// where the file puts it; absent (0): by an older ispf, which moved
    /// it, under the same hashes.
    #[serde(default)]
    pub placement: u32,
}

/// See [`Enforced::placement`].
pub const PLACEMENT: u32 = 1;

impl Enforced {
    /// The hash the datapath holds while this is enforced.
    pub fn kernel_sha256(&self) -> &str {
        self.meta_sha256.as_deref().unwrap_or(&self.sha256)
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct State {
    /// The enforced policy last; during a reload also the one before it.
    pub enforced: Vec<Enforced>,
    /// The ports the controller enforces on, and how.
    pub interfaces: Vec<InterfaceStatus>,
}

pub struct RunDir {
    pub dir: PathBuf,
}

const STATE: &str = "state.json";
const POLICIES: &str = "policies";

impl RunDir {
    pub fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_owned(),
        }
    }

    fn policy_copy(&self, sha: &str) -> PathBuf {
        self.dir.join(POLICIES).join(format!("{sha}.json"))
    }

    /// Keeps a verbatim copy of a policy file under its hash.
    pub fn save_policy(&self, sha: &str, bytes: &[u8]) -> Result<(), StateError> {
        let path = self.policy_copy(sha);
        let _ = fs::create_dir_all(self.dir.join(POLICIES));
        write_atomic(&path, bytes)
    }

    /// The copy of the policy with hash `sha`, if it is there and intact.
    pub fn policy(&self, sha: &str) -> Option<Vec<u8>> {
        let bytes = fs::read(self.policy_copy(sha)).ok()?;
        (crate::policy::hex(&crate::policy::sha256(&bytes)) == sha).then_some(bytes)
    }

    /// Removes policy copies other than `keep`.
    pub fn prune(&self, keep: &[&str]) {
        let Ok(dir) = fs::read_dir(self.dir.join(POLICIES)) else {
            return;
        };
        for e in dir.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let sha = name.trim_end_matches(".json");
            if !keep.contains(&sha) {
                let _ = fs::remove_file(e.path());
            }
        }
    }

    pub fn load(&self) -> Result<Option<State>, StateError> {
        let path = self.dir.join(STATE);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => {
                return Err(StateError::Corrupt {
                    path,
                    message: e.to_string(),
                })
            }
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StateError::Corrupt {
                path,
                message: e.to_string(),
            })
    }

    pub fn save(&self, s: &State) -> Result<(), StateError> {
        let path = self.dir.join(STATE);
        let bytes = serde_json::to_vec_pretty(s).map_err(|e| StateError::Write {
            path: path.clone(),
            source: std::io::Error::other(e),
        })?;
        write_atomic(&path, &bytes)
    }

    /// Forgets everything (`ispf detach`).
    pub fn clear(&self) {
        let _ = fs::remove_file(self.dir.join(STATE));
        let _ = fs::remove_dir_all(self.dir.join(POLICIES));
        let _ = fs::remove_file(crate::control::socket_path(&self.dir));
    }
}

/// Writes `bytes` to `path` so that a crash at any point leaves either the
/// old contents or the new: a temporary beside it, synced, renamed over
/// it, and the directory synced.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    let err = |source| StateError::Write {
        path: path.to_owned(),
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp{}",
        path.file_name()
            .map_or("state".into(), |n| n.to_string_lossy()),
        std::process::id()
    ));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(err)?;
    f.write_all(bytes).map_err(err)?;
    f.sync_all().map_err(err)?;
    drop(f);
    fs::rename(&tmp, path).map_err(err)?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_writes_replace_whole_files() {
        let dir = std::env::temp_dir().join(format!("ispf-state-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let run = RunDir::new(&dir);
        assert!(run.load().unwrap().is_none());
        let e = Enforced {
            sha256: "ab".into(),
            path: "/etc/p.json".into(),
            applied_at: "now".into(),
            segment_ids: [("pumps".to_string(), 3u16)].into(),
            decisions: vec![],
            meta_sha256: None,
            placement: PLACEMENT,
        };
        run.save(&State {
            enforced: vec![e.clone()],
            interfaces: vec![],
        })
        .unwrap();
        assert_eq!(run.load().unwrap().unwrap().enforced, vec![e]);
        let bytes = b"{\"version\": 1}";
        let sha = crate::policy::hex(&crate::policy::sha256(bytes));
        run.save_policy(&sha, bytes).unwrap();
        assert_eq!(run.policy(&sha).as_deref(), Some(&bytes[..]));
        // A copy whose bytes no longer match its name is not trusted.
        fs::write(run.policy_copy(&sha), b"{}").unwrap();
        assert_eq!(run.policy(&sha), None);
        run.prune(&[]);
        assert!(fs::read_dir(dir.join(POLICIES)).unwrap().next().is_none());
        fs::write(dir.join(STATE), b"").unwrap();
        assert!(matches!(run.load(), Err(StateError::Corrupt { .. })));
        assert!(fs::read_dir(&dir).unwrap().all(|e| !e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .contains(".tmp")));
        fs::remove_dir_all(&dir).unwrap();
    }
}
