//! `ispf sessions`: the role sessions RADIUS accounting opened, through
//! the control socket.

use std::{path::Path, process::ExitCode, time::Duration};

use anyhow::{bail, Result};
use ispf::{
    clock::rfc3339,
    control::{self, Request, Response},
};

pub fn sessions(json: bool, run_dir: &Path) -> Result<ExitCode> {
    let r = control::request(run_dir, &Request::Sessions, Duration::from_secs(30))?;
    let Response::Sessions {
        sessions,
        listening,
    } = r
    else {
        if let Response::Error { message } = r {
            bail!("{message}");
        }
        bail!("unexpected answer");
    };
    if json {
        for s in &sessions {
            println!(
                "{}",
                serde_json::json!({
                    "user": s.user, "role": s.role, "mac": s.mac, "segment": s.segment,
                    "since": rfc3339(s.since), "last_update": rfc3339(s.last_update),
                    "nas": s.nas, "session": s.id, "timeout_s": s.timeout_s,
                })
            );
        }
        return Ok(ExitCode::SUCCESS);
    }
    match &listening {
        None => println!("the enforced policy has no identity section"),
        Some(Ok(addr)) => println!(
            "RADIUS accounting on udp {addr}: {} sessions open",
            sessions.len()
        ),
        Some(Err(e)) => println!("RADIUS accounting NOT RECEIVED (enforcement unaffected): {e}"),
    }
    if !sessions.is_empty() {
        println!(
            "{:<20} {:<18} {:<18} {:<22} {:<21} {:<15} SESSION",
            "USER", "ROLE", "MAC", "SEGMENT", "SINCE", "NAS"
        );
    }
    for s in sessions {
        println!(
            "{:<20} {:<18} {:<18} {:<22} {:<21} {:<15} {}",
            s.user,
            s.role,
            s.mac,
            s.segment,
            rfc3339(s.since),
            s.nas,
            s.id
        );
    }
    Ok(ExitCode::SUCCESS)
}
