//! The site the fleet tests run: its policy, its hosts (controllers that
//! follow it through etcd) and what the tests read off etcd and metrics.

use super::*;

pub const SITE: &str = "st-marys";

pub fn policy(name: &str, extra_rule: &str) -> PathBuf {
    let text = format!(
        r#"{{"version": 1,
        "segments": [
          {{"name": "pumps", "life_critical": true}},
          {{"name": "pis-servers", "subnets": ["10.50.0.0/24"]}},
          {{"name": "workstations"}}
        ],
        "devices": [
          {{"name": "pump", "mac": "{PUMP1}", "ipv4": "10.10.0.11", "segment": "pumps"}},
          {{"name": "ws", "mac": "{LAPTOP}", "ipv4": "10.99.0.7", "segment": "workstations", "risk": "medium"}}
        ],
        "rules": [
          {{"from": "pumps", "to": "pis-servers", "proto": "tcp", "ports": [2575], "action": "allow"}},
          {{"from": "workstations", "to": "pis-servers", "proto": "tcp", "ports": [443], "action": "allow"}}{extra_rule}
        ]}}"#
    );
    write_policy(&format!("fleet-{name}"), &text)
}

pub fn sha(path: &Path) -> String {
    ispf::policy::hex(&ispf::policy::sha256(&std::fs::read(path).unwrap()))
}

pub fn fleet(urls: &str, args: &[&str]) -> Output {
    std::process::Command::new(ispf_bin())
        .arg("fleet")
        .args(args)
        .env("ISPF_ETCD", urls)
        .env("ISPF_SITE", SITE)
        .output()
        .unwrap()
}

pub fn hosts(urls: &str) -> Vec<Value> {
    let out = fleet(urls, &["status", "--json"]);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until the first host reports the seed as revision 1.
pub fn wait_seeded(urls: &str) {
    wait("seeded", Duration::from_secs(10), || {
        hosts(urls).first().is_some_and(|x| x["revision"] == 1)
    });
}

pub struct Host {
    pub ctl: Ctl,
    pub tag: &'static str,
    pub metrics: String,
    pub ports: [String; 3],
}

pub fn start_host(tag: &'static str, n: u16, seed: &Path, urls: &str, fresh: bool) -> Host {
    start_host_with(tag, n, seed, urls, fresh, &[])
}

/// [`start_host`] with more options for `ispf run`.
pub fn start_host_with(
    tag: &'static str,
    n: u16,
    seed: &Path,
    urls: &str,
    fresh: bool,
    extra: &[&str],
) -> Host {
    let p = if fresh {
        paths(tag)
    } else {
        Paths {
            pin: PathBuf::from(format!("/sys/fs/bpf/ispf-test-{tag}")),
            run: PathBuf::from(format!("/tmp/ispf-test-run-{tag}")),
            state: PathBuf::from(format!("/tmp/ispf-test-state-{tag}")),
        }
    };
    let ports = [
        format!("ip{tag}pump"),
        format!("ip{tag}pis"),
        format!("ip{tag}lap"),
    ];
    let metrics = format!("127.0.0.1:{}", 19500 + n);
    let host = format!("host-{tag}");
    let mut args = vec![
        "--etcd",
        urls,
        "--site",
        SITE,
        "--fleet-host",
        &host,
        "--metrics-addr",
        &metrics,
    ];
    args.extend_from_slice(extra);
    let ctl = Ctl::start_with(p, seed, &[&ports[0], &ports[1], &ports[2]], &args);
    Host {
        ctl,
        tag,
        metrics,
        ports,
    }
}

impl Host {
    pub fn ws(&self) -> String {
        format!("ispf-{}-lap", self.tag)
    }
    pub fn sha(&self) -> String {
        self.ctl.status().policy_sha256
    }
}

/// `f` with a client of the etcd at `urls`, on a runtime of its own.
pub fn etcd<F, T>(urls: &str, f: F) -> T
where
    F: AsyncFnOnce(&mut etcd_client::Client) -> T,
{
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let endpoints: Vec<&str> = urls.split(',').collect();
        let mut c = etcd_client::Client::connect(endpoints, None).await.unwrap();
        f(&mut c).await
    })
}

/// Whether etcd holds `key`.
pub fn etcd_has(urls: &str, key: &str) -> bool {
    etcd(urls, async |c| {
        !c.get(key, None).await.unwrap().kvs().is_empty()
    })
}

pub fn metric(addr: &str, name: &str) -> Option<f64> {
    sample(&scrape(addr), name, &[])
}

pub fn put(urls: &str, key: &str, value: Vec<u8>) {
    etcd(urls, async |c| c.put(key, value, None).await.unwrap());
}

pub fn del(urls: &str, key: &str) {
    etcd(urls, async |c| c.delete(key, None).await.unwrap());
}

/// The first host's status's `last_error` ("" when none).
pub fn last_error(urls: &str) -> String {
    hosts(urls)
        .first()
        .and_then(|h| h["last_error"].as_str().map(str::to_owned))
        .unwrap_or_default()
}
