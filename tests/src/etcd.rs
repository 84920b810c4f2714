//! A real etcd (Debian's `etcd-server`) for fleet tests: one member or a
//! cluster of three, on loopback ports, in a temporary data directory,
//! killed when dropped.

use std::{
    path::PathBuf,
    process::{Child, Stdio},
    time::{Duration, Instant},
};

pub struct Member {
    pub name: String,
    pub client: String,
    peer: String,
    dir: PathBuf,
    cluster: String,
    child: Option<Child>,
}

impl Member {
    /// Starts (or restarts, keeping its data) this member.
    pub fn start(&mut self) {
        let state = if self.dir.join("member").exists() {
            "existing"
        } else {
            "new"
        };
        let child = crate::programs::command("etcd")
            .args(["--name", &self.name, "--data-dir"])
            .arg(&self.dir)
            .args([
                "--listen-client-urls",
                &self.client,
                "--advertise-client-urls",
                &self.client,
            ])
            .args([
                "--listen-peer-urls",
                &self.peer,
                "--initial-advertise-peer-urls",
                &self.peer,
            ])
            .args([
                "--initial-cluster",
                &self.cluster,
                "--initial-cluster-state",
                state,
            ])
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            // A 100k-device policy is ~16 MB; etcd's default limit is 1.5 MiB.
            .args(["--max-request-bytes", "67108864"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("etcd");
        self.child = Some(child);
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub struct Etcd {
    pub members: Vec<Member>,
}

impl Etcd {
    /// `n` members; client ports from `base`, peer ports from `base + 100`.
    pub fn start(tag: &str, n: usize, base: u16) -> Etcd {
        let names: Vec<String> = (0..n).map(|i| format!("{tag}{i}")).collect();
        let peer = |i: usize| format!("http://127.0.0.1:{}", base + 100 + i as u16);
        let cluster = names
            .iter()
            .enumerate()
            .map(|(i, n)| format!("{n}={}", peer(i)))
            .collect::<Vec<_>>()
            .join(",");
        // Another etcd on these ports would answer the health check and
        // the test would count its hosts: refuse to start beside it.
        for port in (0..n as u16).flat_map(|i| [base + i, base + 100 + i]) {
            if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
                panic!("127.0.0.1:{port} is taken ({e}): another etcd? the test needs its own");
            }
        }
        let mut members = Vec::new();
        for (i, name) in names.iter().enumerate() {
            let dir = std::env::temp_dir().join(format!("ispf-etcd-{name}"));
            let _ = std::fs::remove_dir_all(&dir);
            let mut m = Member {
                name: name.clone(),
                client: format!("http://127.0.0.1:{}", base + i as u16),
                peer: peer(i),
                dir,
                cluster: cluster.clone(),
                child: None,
            };
            m.start();
            members.push(m);
        }
        let e = Etcd { members };
        e.wait_healthy(Duration::from_secs(20));
        e
    }

    /// Every client URL, comma-separated (what `--etcd` takes).
    pub fn urls(&self) -> String {
        self.members
            .iter()
            .map(|m| m.client.clone())
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Waits until a write through the cluster succeeds.
    pub fn wait_healthy(&self, within: Duration) {
        let t = Instant::now();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        loop {
            let urls: Vec<String> = self
                .members
                .iter()
                .filter(|m| m.running())
                .map(|m| m.client.clone())
                .collect();
            let ok = rt.block_on(async {
                let Ok(Ok(mut c)) = tokio::time::timeout(
                    Duration::from_secs(2),
                    etcd_client::Client::connect(urls, None),
                )
                .await
                else {
                    return false;
                };
                matches!(
                    tokio::time::timeout(
                        Duration::from_secs(2),
                        c.put("/ispf-test/health", "ok", None)
                    )
                    .await,
                    Ok(Ok(_))
                )
            });
            if ok {
                return;
            }
            assert!(
                t.elapsed() < within,
                "etcd did not become healthy within {within:?}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// The index of the current leader.
    pub fn leader(&self) -> Option<usize> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        for (i, m) in self.members.iter().enumerate().filter(|(_, m)| m.running()) {
            let is = rt.block_on(async {
                let mut c = etcd_client::Client::connect([m.client.clone()], None)
                    .await
                    .ok()?;
                let s = c.status().await.ok()?;
                Some(s.leader() == s.header()?.member_id())
            });
            if is == Some(true) {
                return Some(i);
            }
        }
        None
    }
}
