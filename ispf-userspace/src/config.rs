//! `/etc/ispf/ispf.toml`: what `ispf service` (the systemd unit) runs —
//! the same choices as `ispf run`'s options, in a file an operator edits
//! and a package ships as a conffile. Unknown keys, wrong types and
//! missing fields are errors naming the key path and the line.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {}: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: line {line}: `{path}`: {message}", file.display())]
    Invalid {
        file: PathBuf,
        path: String,
        line: usize,
        message: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Bridge ports to enforce on.
    pub interfaces: Vec<String>,
    /// The policy file (with `[etcd]`: only seeds an empty site).
    pub policy: Option<PathBuf>,
    pub etcd: Option<EtcdConfig>,
    #[serde(default = "metrics_addr")]
    pub metrics_addr: SocketAddr,
    #[serde(default)]
    pub metrics_allow_remote: bool,
    #[serde(default = "state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "pin_dir")]
    pub pin_dir: PathBuf,
    #[serde(default = "run_dir")]
    pub run_dir: PathBuf,
    /// `auto`, `xdp` or `tc`.
    #[serde(default = "hook")]
    pub hook: String,
    /// Map sizes by name: devices, policy, conntrack, fragments, counters, feeds.
    #[serde(default)]
    pub map_sizes: BTreeMap<String, u32>,
    pub events: Option<PathBuf>,
    pub alert_webhook: Option<String>,
    pub max_unknown_devices: Option<usize>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EtcdConfig {
    pub endpoints: Vec<String>,
    pub site: String,
    pub host: Option<String>,
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
}

fn metrics_addr() -> SocketAddr {
    crate::controller::DEFAULT_METRICS_ADDR
        .parse()
        .expect("a socket address")
}
fn state_dir() -> PathBuf {
    "/var/lib/ispf".into()
}
fn pin_dir() -> PathBuf {
    "/sys/fs/bpf/ispf".into()
}
fn run_dir() -> PathBuf {
    "/run/ispf".into()
}
fn hook() -> String {
    "auto".into()
}

/// 1-based line of byte `offset` in `text`.
fn line_of(text: &str, offset: usize) -> usize {
    text.as_bytes()[..offset.min(text.len())]
        .iter()
        .filter(|b| **b == b'\n')
        .count()
        + 1
}

impl Config {
    pub fn read(file: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|source| ConfigError::Read {
            file: file.to_owned(),
            source,
        })?;
        Self::parse(&text, file)
    }

    pub fn parse(text: &str, file: &Path) -> Result<Config, ConfigError> {
        let de = toml::Deserializer::new(text);
        let c: Config = serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            let inner = e.into_inner();
            ConfigError::Invalid {
                file: file.to_owned(),
                path: if path == "." || path.is_empty() {
                    "(document)".into()
                } else {
                    path
                },
                line: inner.span().map_or(1, |s| line_of(text, s.start)),
                message: inner.message().to_owned(),
            }
        })?;
        let bad = |path: &str, message: String| ConfigError::Invalid {
            file: file.to_owned(),
            path: path.into(),
            line: text
                .lines()
                .position(|l| {
                    l.trim_start()
                        .starts_with(path.rsplit('.').next().unwrap_or(path))
                })
                .map_or(1, |i| i + 1),
            message,
        };
        if c.interfaces.is_empty() {
            return Err(bad(
                "interfaces",
                "name at least one bridge port to enforce on".into(),
            ));
        }
        if c.policy.is_none() && c.etcd.is_none() {
            return Err(bad(
                "policy",
                "set `policy = \"/etc/ispf/policy.json\"` or an `[etcd]` section".into(),
            ));
        }
        if !matches!(c.hook.as_str(), "auto" | "xdp" | "tc") {
            return Err(bad("hook", format!("`{}`: one of auto, xdp, tc", c.hook)));
        }
        // The unit's working directory is not the file's: a relative
        // path would name whatever lies under / (or the shell's directory
        // of a hand-run `ispf service`), not what the operator meant.
        let etcd = c.etcd.as_ref();
        let paths = [
            ("policy", c.policy.as_ref()),
            ("state_dir", Some(&c.state_dir)),
            ("pin_dir", Some(&c.pin_dir)),
            ("run_dir", Some(&c.run_dir)),
            ("events", c.events.as_ref()),
            ("etcd.ca", etcd.and_then(|e| e.ca.as_ref())),
            ("etcd.cert", etcd.and_then(|e| e.cert.as_ref())),
            ("etcd.key", etcd.and_then(|e| e.key.as_ref())),
            (
                "etcd.password_file",
                etcd.and_then(|e| e.password_file.as_ref()),
            ),
        ];
        for (key, p) in paths {
            if let Some(p) = p.filter(|p| p.is_relative()) {
                return Err(bad(
                    key,
                    format!(
                        "`{}` is relative, and the service does not run from this file's directory: write the full path (such as /etc/ispf/{})",
                        p.display(),
                        p.display()
                    ),
                ));
            }
        }
        for k in c.map_sizes.keys() {
            if !matches!(
                k.as_str(),
                "devices" | "policy" | "conntrack" | "fragments" | "counters" | "feeds"
            ) {
                return Err(bad(
                    &format!("map_sizes.{k}"),
                    "map sizes are devices, policy, conntrack, fragments, counters and feeds"
                        .into(),
                ));
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(t: &str) -> Result<Config, ConfigError> {
        Config::parse(t, Path::new("/etc/ispf/ispf.toml"))
    }

    #[test]
    fn relative_paths_are_refused_with_the_line() {
        let e = parse("interfaces = [\"p1\"]\n\npolicy = \"care.json\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("line 3") && e.contains("`policy`") && e.contains("/etc/ispf/care.json"),
            "{e}"
        );
        let e = parse(
            "interfaces = [\"p1\"]\n[etcd]\nendpoints = [\"https://e:2379\"]\nsite = \"s\"\nca = \"ca.pem\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("etcd.ca") && e.contains("line 5"), "{e}");
    }

    #[test]
    fn the_shipped_file_parses() {
        let c = parse(include_str!("../../packaging/ispf.toml")).unwrap();
        assert_eq!(c.interfaces.len(), 2);
        assert_eq!(c.hook, "auto");
    }

    #[test]
    fn errors_name_the_key_and_the_line() {
        let e = parse("interfaces = [\"a\"]\npolicy = \"/p.json\"\nmetrics_adr = \"x\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 3") && e.contains("metrics_adr"), "{e}");
        let e = parse("interfaces = [\"a\"]\npolicy = \"/p.json\"\n\n[etcd]\nendpoints = \"http://x\"\nsite = \"s\"\n").unwrap_err().to_string();
        assert!(e.contains("etcd.endpoints") && e.contains("line 5"), "{e}");
        let e = parse("policy = \"/p.json\"\n").unwrap_err().to_string();
        assert!(e.contains("interfaces"), "{e}");
        let e = parse("interfaces = [\"a\"]\n").unwrap_err().to_string();
        assert!(e.contains("policy") && e.contains("[etcd]"), "{e}");
        let e = parse("interfaces = [\"a\"]\npolicy = \"/p\"\nhook = \"ebpf\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("hook") && e.contains("line 3"), "{e}");
        let e = parse("interfaces = [\"a\"]\npolicy = \"/p\"\n[map_sizes]\nrules = 5\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("map_sizes.rules"), "{e}");
        let e = parse("interfaces = [\"a\"\n").unwrap_err().to_string();
        assert!(e.contains("line"), "{e}");
    }
}
