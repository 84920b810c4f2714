//! The etcd connection (etcd-client, the v3 gRPC API): how a host or a
//! `fleet` command connects, and the few operations the fleet needs —
//! each with a deadline, so an unreachable etcd is an error, never a hang.

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, GetOptions, KvClient, PutOptions, Txn, TxnOp,
};

use super::{keys, FleetError, Options};
use crate::decisions::Decision;

/// Every request's deadline.
pub const TIMEOUT: Duration = Duration::from_secs(5);
/// gRPC's default 4 MiB message limit is a policy of ~30k devices; a
/// site's policy may be far larger (etcd itself must allow it:
/// `--max-request-bytes`).
pub const MAX_MESSAGE: usize = 512 << 20;

/// The key-value client with room for a large policy.
pub fn kv(c: &Client) -> KvClient {
    c.kv_client()
        .max_decoding_message_size(MAX_MESSAGE)
        .max_encoding_message_size(MAX_MESSAGE)
}

pub async fn connect(o: &Options) -> Result<Client, FleetError> {
    let mut c = ConnectOptions::new()
        .with_connect_timeout(TIMEOUT)
        .with_timeout(TIMEOUT)
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(3));
    if let Some(user) = &o.user {
        let password = match &o.password_file {
            Some(p) => std::fs::read_to_string(p)
                .map_err(|e| {
                    FleetError::Config(format!("--etcd-password-file {}: {e}", p.display()))
                })?
                .trim_end_matches(['\n', '\r'])
                .to_owned(),
            None => {
                return Err(FleetError::Config(
                    "--etcd-user needs --etcd-password-file".into(),
                ))
            }
        };
        c = c.with_user(user.clone(), password);
    }
    if o.ca.is_some() || o.cert.is_some() {
        let mut tls = etcd_client::TlsOptions::new();
        if let Some(ca) = &o.ca {
            let pem = std::fs::read(ca)
                .map_err(|e| FleetError::Config(format!("--etcd-ca {}: {e}", ca.display())))?;
            tls = tls.ca_certificate(etcd_client::Certificate::from_pem(pem));
        }
        if let (Some(cert), Some(key)) = (&o.cert, &o.key) {
            let c = std::fs::read(cert)
                .map_err(|e| FleetError::Config(format!("--etcd-cert {}: {e}", cert.display())))?;
            let k = std::fs::read(key)
                .map_err(|e| FleetError::Config(format!("--etcd-key {}: {e}", key.display())))?;
            tls = tls.identity(etcd_client::Identity::from_pem(c, k));
        }
        c = c.with_tls(tls);
    }
    // One endpoint at a time, each proven to answer: a balanced channel
    // over every endpoint keeps sending requests to a member that is down.
    // A host that loses its member reconnects (its watch fails) and lands
    // on another.
    let start = (std::process::id() as usize + unix_nanos()) % o.endpoints.len().max(1);
    let mut failures = Vec::new();
    for i in 0..o.endpoints.len() {
        let ep = &o.endpoints[(start + i) % o.endpoints.len()];
        let attempt = async {
            let mut client = Client::connect([ep.clone()], Some(c.clone())).await?;
            client.status().await?;
            Ok::<_, etcd_client::Error>(client)
        };
        match tokio::time::timeout(TIMEOUT, attempt).await {
            Ok(Ok(client)) => return Ok(client),
            Ok(Err(e)) => failures.push(format!("{ep}: {}", plain(&e))),
            Err(_) => failures.push(format!("{ep}: no answer within {TIMEOUT:?}")),
        }
    }
    Err(FleetError::Unreachable(failures.join("; ")))
}

fn unix_nanos() -> usize {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as usize)
}

async fn deadline<T>(
    what: &str,
    f: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T, FleetError> {
    tokio::time::timeout(TIMEOUT, f)
        .await
        .map_err(|_| FleetError::Unreachable(format!("{what}: no answer within {TIMEOUT:?}")))?
        .map_err(|e| FleetError::Unreachable(format!("{what}: {}", plain(&e))))
}

/// etcd's answer in words: gRPC's status code and message, or the
/// transport's chain of causes, without tonic's debug dump (`details: [],
/// metadata: MetadataMap { .. }`), with what to check for the usual ones.
pub fn plain(e: &etcd_client::Error) -> String {
    use tonic::Code;
    match e {
        etcd_client::Error::GRpcStatus(s) => {
            let hint = match s.code() {
                Code::PermissionDenied => " (the etcd user lacks a role on this site's keys)",
                Code::Unauthenticated => " (check --etcd-user and --etcd-password-file)",
                Code::Unavailable | Code::DeadlineExceeded => " (is etcd running and reachable?)",
                Code::ResourceExhausted => " (etcd's space quota: compact and defragment it)",
                _ => "",
            };
            format!("etcd said {:?}: {}{hint}", s.code(), s.message())
        }
        etcd_client::Error::TransportError(t) => {
            let mut text = t.to_string();
            let mut cause = std::error::Error::source(t);
            while let Some(c) = cause {
                text.push_str(": ");
                text.push_str(&c.to_string());
                cause = c.source();
            }
            format!("{text} (is etcd running and reachable?)")
        }
        e => e.to_string(),
    }
}

/// The site's policy and its revision: how many pushes made it (the key's
/// etcd `version`: 1, 2, 3, ... — a site's own count, unlike etcd's global
/// revision, which every host's status report moves).
pub async fn policy(c: &mut Client, site: &str) -> Result<Option<(Vec<u8>, i64)>, FleetError> {
    let r = deadline("reading the policy", kv(c).get(keys::policy(site), None)).await?;
    Ok(r.kvs()
        .first()
        .map(|kv| (kv.value().to_vec(), kv.version())))
}

/// Everything under the site's prefix (key, value, version), and the
/// store's revision then (where a watch continues).
pub async fn site(
    c: &mut Client,
    site: &str,
) -> Result<(Vec<(Vec<u8>, Vec<u8>, i64)>, i64), FleetError> {
    let r = deadline(
        "reading the site",
        kv(c).get(
            keys::site_prefix(site),
            Some(GetOptions::new().with_prefix()),
        ),
    )
    .await?;
    let rev = r.header().map_or(0, |h| h.revision());
    Ok((
        r.kvs()
            .iter()
            .map(|kv| (kv.key().to_vec(), kv.value().to_vec(), kv.version()))
            .collect(),
        rev,
    ))
}

/// Writes `bytes` as the site's policy if it is still at revision
/// `expected` (0: none yet), with its history entry, in one transaction.
/// `Ok(Ok(rev))`: the new revision; `Ok(Err(rev))`: someone else pushed
/// first, the revision now there.
pub async fn push(
    c: &mut Client,
    site: &str,
    bytes: &[u8],
    expected: i64,
    pushed: &keys::Pushed,
) -> Result<Result<i64, i64>, FleetError> {
    let key = keys::policy(site);
    let next = expected + 1;
    let mut entry = pushed.clone();
    entry.revision = next;
    let txn = Txn::new()
        .when(vec![Compare::version(
            key.clone(),
            CompareOp::Equal,
            expected,
        )])
        .and_then(vec![
            TxnOp::put(key.clone(), bytes.to_vec(), None),
            TxnOp::put(
                keys::history(site, next),
                serde_json::to_vec(&entry).unwrap_or_default(),
                None,
            ),
        ]);
    let r = deadline("pushing the policy", kv(c).txn(txn)).await?;
    if r.succeeded() {
        // Where the document can be read again: the transaction's revision.
        entry.etcd_revision = r.header().map_or(0, |h| h.revision());
        let _ = put(
            c,
            keys::history(site, next),
            serde_json::to_vec(&entry).unwrap_or_default(),
            None,
        )
        .await;
        return Ok(Ok(next));
    }
    let cur = policy(c, site).await?.map_or(0, |(_, r)| r);
    Ok(Err(cur))
}

pub async fn put(
    c: &mut Client,
    key: String,
    value: Vec<u8>,
    lease: Option<i64>,
) -> Result<(), FleetError> {
    let opts = lease.map(|l| PutOptions::new().with_lease(l));
    deadline("writing", kv(c).put(key, value, opts)).await?;
    Ok(())
}

/// A lease that etcd ends, with every key put under it, `ttl_s` seconds
/// from now.
pub async fn lease(c: &mut Client, ttl_s: i64) -> Result<i64, FleetError> {
    let r = deadline("granting a lease", c.lease_grant(ttl_s, None)).await?;
    Ok(r.id())
}

pub async fn delete(c: &mut Client, key: String) -> Result<(), FleetError> {
    deadline("deleting", kv(c).delete(key, None)).await?;
    Ok(())
}

/// Deletes `key` only while what it holds passes `ok` (the decision, or
/// `None` for a value that is none); false when it holds one that does
/// not (true when it is gone already: another host deleted it). Judged as
/// a decision, not as bytes: a key another ispf version or a hand wrote in
/// another form means the same. The delete is conditional on the revision
/// read, so a decision written in between is not deleted; read again once.
pub async fn delete_if_holds(
    c: &mut Client,
    key: String,
    ok: impl Fn(Option<&Decision>) -> bool,
) -> Result<bool, FleetError> {
    for _ in 0..2 {
        let r = deadline("reading", kv(c).get(key.clone(), None)).await?;
        let Some(found) = r.kvs().first() else {
            return Ok(true);
        };
        if !ok(keys::decode_decision(found.value()).as_ref()) {
            return Ok(false);
        }
        let at = found.mod_revision();
        let txn = Txn::new()
            .when(vec![Compare::mod_revision(
                key.clone(),
                CompareOp::Equal,
                at,
            )])
            .and_then(vec![TxnOp::delete(key.clone(), None)]);
        if deadline("deleting", kv(c).txn(txn)).await?.succeeded() {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The policy document as it was at etcd store revision `rev`.
pub async fn policy_at(
    c: &mut Client,
    site: &str,
    rev: i64,
) -> Result<Option<Vec<u8>>, FleetError> {
    if rev <= 0 {
        return Ok(None);
    }
    let r = deadline(
        "reading an earlier revision",
        kv(c).get(
            keys::policy(site),
            Some(GetOptions::new().with_revision(rev)),
        ),
    )
    .await?;
    Ok(r.kvs().first().map(|kv| kv.value().to_vec()))
}
