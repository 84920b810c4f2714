//! `cargo xtask package`: `target/debian/ispf_<version>_amd64.deb`, built
//! with `dpkg-deb` from a staging tree — the release binary, man pages and
//! shell completions generated from the CLI itself (`ispf man`,
//! `ispf completions`), the policy reference, the example policy and the
//! Grafana board, the systemd unit and its configuration (a conffile).
//! Written here rather than with cargo-deb: one more tool to install on
//! every machine for forty lines of staging.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context, Result};

use crate::{cargo, root, run};

const VERSION: &str = env!("CARGO_PKG_VERSION");

fn copy(from: &Path, to: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::create_dir_all(to.parent().context("a parent")?)?;
    fs::copy(from, to)
        .with_context(|| format!("copying {} to {}", from.display(), to.display()))?;
    fs::set_permissions(to, fs::Permissions::from_mode(mode))?;
    Ok(())
}

fn gzip(path: &Path) -> Result<()> {
    run(Command::new("gzip").args(["-9n", "-f"]).arg(path))
}

pub fn package() -> Result<PathBuf> {
    run(&mut cargo(&[
        "build",
        "-q",
        "--release",
        "-p",
        "ispf-userspace",
        "--bin",
        "ispf",
    ]))?;
    let ws = root();
    let bin = ws.join("target/release/ispf");
    let out = ws.join("target/debian");
    let stage = out.join(format!("ispf_{VERSION}_amd64"));
    let _ = fs::remove_dir_all(&stage);
    fs::create_dir_all(&stage)?;
    copy(&bin, &stage.join("usr/bin/ispf"), 0o755)?;
    // Man pages and completions from the CLI's own definition.
    let man = stage.join("usr/share/man/man1");
    fs::create_dir_all(&man)?;
    run(Command::new(&bin).arg("man").arg(&man))?;
    // The policy reference as ispf-policy(5), from docs/policy.md.
    let policy_man = stage.join("usr/share/man/man5/ispf-policy.5");
    fs::create_dir_all(policy_man.parent().context("a parent")?)?;
    let md = fs::read_to_string(ws.join("docs/policy.md"))?;
    fs::write(
        &policy_man,
        crate::roff::man_page(&md, "ispf-policy", 5, "2026"),
    )?;
    gzip(&policy_man)?;
    for entry in fs::read_dir(&man)? {
        gzip(&entry?.path())?;
    }
    for (shell, path) in [
        ("bash", "usr/share/bash-completion/completions/ispf"),
        ("zsh", "usr/share/zsh/vendor-completions/_ispf"),
        ("fish", "usr/share/fish/vendor_completions.d/ispf.fish"),
    ] {
        let o = Command::new(&bin).args(["completions", shell]).output()?;
        anyhow::ensure!(o.status.success(), "ispf completions {shell} failed");
        let p = stage.join(path);
        fs::create_dir_all(p.parent().context("a parent")?)?;
        fs::write(&p, &o.stdout)?;
    }
    let doc = stage.join("usr/share/doc/ispf");
    for (from, to) in [
        ("README.md", "README.md"),
        ("docs/policy.md", "policy.md"),
        ("examples/care-unit.json", "examples/care-unit.json"),
        ("dashboards/ispf-grafana.json", "ispf-grafana.json"),
        ("packaging/copyright", "copyright"),
    ] {
        copy(&ws.join(from), &doc.join(to), 0o644)?;
    }
    copy(
        &ws.join("packaging/ispf.service"),
        &stage.join("lib/systemd/system/ispf.service"),
        0o644,
    )?;
    copy(
        &ws.join("packaging/ispf.toml"),
        &stage.join("etc/ispf/ispf.toml"),
        0o640,
    )?;
    let debian = stage.join("DEBIAN");
    fs::create_dir_all(&debian)?;
    let size_kb = du(&stage)? / 1024;
    fs::write(
        debian.join("control"),
        format!(
            "Package: ispf\nVersion: {VERSION}\nArchitecture: amd64\nMaintainer: ispf developers <ispf@localhost>\n\
             Installed-Size: {size_kb}\nDepends: libc6 (>= 2.36), ieee-data\nRecommends: iproute2\nSection: net\nPriority: optional\n\
             Homepage: https://example.invalid/ispf\n\
             Description: internal segmentation firewall for hospital networks (eBPF/XDP)\n \
             Enforces a segment-pair policy between medical devices on the Linux hosts\n \
             that bridge care-unit VLANs, with a device inventory, threat feeds,\n \
             detection and response, RADIUS identity sessions and fleet operation.\n"
        ),
    )?;
    fs::write(debian.join("conffiles"), "/etc/ispf/ispf.toml\n")?;
    for (name, body) in [
        ("postinst", "#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi\n"),
        // Removing the package stops the controller; enforcement stays
        // pinned until `ispf detach` (said in the README and ispf(1)).
        ("prerm", "#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then systemctl stop ispf.service || true; fi\n"),
        ("postrm", "#!/bin/sh\nset -e\nif [ -d /run/systemd/system ]; then systemctl daemon-reload || true; fi\n"),
    ] {
        use std::os::unix::fs::PermissionsExt;
        let p = debian.join(name);
        fs::write(&p, body)?;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755))?;
    }
    let deb = out.join(format!("ispf_{VERSION}_amd64.deb"));
    run(Command::new("dpkg-deb")
        .args(["--build", "--root-owner-group"])
        .arg(&stage)
        .arg(&deb))?;
    eprintln!("built {}", deb.display());
    Ok(deb)
}

fn du(dir: &Path) -> Result<u64> {
    let mut total = 0;
    for e in fs::read_dir(dir)? {
        let e = e?;
        let m = e.metadata()?;
        total += if m.is_dir() { du(&e.path())? } else { m.len() };
    }
    Ok(total)
}
