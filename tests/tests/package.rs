//! `cargo xtask package` builds a Debian package that installs like any
//! server software: the binary, man pages (ispf(1) and one per subcommand,
//! ispf-policy(5)), completions, the docs and example policy, the systemd
//! unit and its configuration as a conffile. The unit passes `systemd-
//! analyze verify`, keeps only the capabilities the controller needs, and
//! the shipped configuration is one `ispf service --check` accepts.

use std::{path::PathBuf, process::Command};

use ispf_tests::programs::command;

fn ws() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_owned()
}

#[test]
fn the_package_holds_what_a_server_needs_and_its_unit_verifies() {
    let st = command("cargo")
        .args(["xtask", "package"])
        .current_dir(ws())
        .status()
        .unwrap();
    assert!(st.success(), "cargo xtask package failed");
    let deb = ws().join(format!(
        "target/debian/ispf_{}_amd64.deb",
        env!("CARGO_PKG_VERSION")
    ));
    let list = String::from_utf8(
        command("dpkg-deb")
            .arg("-c")
            .arg(&deb)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    for path in [
        "./usr/bin/ispf",
        "./usr/share/man/man1/ispf.1.gz",
        "./usr/share/man/man1/ispf-run.1.gz",
        "./usr/share/man/man1/ispf-fleet.1.gz",
        "./usr/share/man/man5/ispf-policy.5.gz",
        "./usr/share/bash-completion/completions/ispf",
        "./usr/share/zsh/vendor-completions/_ispf",
        "./usr/share/fish/vendor_completions.d/ispf.fish",
        "./usr/share/doc/ispf/examples/care-unit.json",
        "./usr/share/doc/ispf/ispf-grafana.json",
        "./usr/share/doc/ispf/policy.md",
        "./usr/share/doc/ispf/copyright",
        "./lib/systemd/system/ispf.service",
        "./etc/ispf/ispf.toml",
    ] {
        assert!(
            list.lines().any(|l| l.ends_with(path)),
            "{path} missing from the package:\n{list}"
        );
    }
    let field = |f: &str| {
        String::from_utf8(
            command("dpkg-deb")
                .args(["-f"])
                .arg(&deb)
                .arg(f)
                .output()
                .unwrap()
                .stdout,
        )
        .unwrap()
        .trim()
        .to_owned()
    };
    assert_eq!(field("Package"), "ispf");
    assert_eq!(field("Architecture"), "amd64");
    assert!(field("Depends").contains("ieee-data"));
    let root = std::env::temp_dir().join("ispf-test-debroot");
    let _ = std::fs::remove_dir_all(&root);
    assert!(command("dpkg-deb")
        .arg("-x")
        .arg(&deb)
        .arg(&root)
        .status()
        .unwrap()
        .success());
    let conffiles = String::from_utf8(
        command("dpkg-deb")
            .args(["-I"])
            .arg(&deb)
            .arg("conffiles")
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    assert_eq!(
        conffiles.trim(),
        "/etc/ispf/ispf.toml",
        "the configuration survives upgrades"
    );
    // The unit, pointed at the extracted binary (this machine has no
    // /usr/bin/ispf), verifies; it keeps only three capabilities and says
    // that stopping leaves enforcement in place.
    let unit = std::fs::read_to_string(root.join("lib/systemd/system/ispf.service")).unwrap();
    assert!(
        unit.contains("CapabilityBoundingSet=CAP_BPF CAP_NET_ADMIN CAP_PERFMON"),
        "{unit}"
    );
    for opt in [
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ProtectHome=yes",
        "PrivateTmp=yes",
        "Restart=on-failure",
        "ExecReload=",
        "ReadWritePaths=",
    ] {
        assert!(unit.contains(opt), "{opt} missing from the unit");
    }
    let bin = root.join("usr/bin/ispf");
    let dir = std::env::temp_dir().join("ispf-test-unit");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("ispf.service"),
        unit.replace("/usr/bin/ispf", bin.to_str().unwrap()),
    )
    .unwrap();
    let v = command("systemd-analyze")
        .args(["verify", "--man=no"])
        .arg(dir.join("ispf.service"))
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "systemd-analyze verify: {}",
        String::from_utf8_lossy(&v.stderr)
    );
    let sec = command("systemd-analyze")
        .args(["security", "--offline=true"])
        .arg(dir.join("ispf.service"))
        .output()
        .unwrap();
    let sec = String::from_utf8_lossy(&sec.stdout).into_owned();
    let exposure = sec
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or("")
        .to_owned();
    eprintln!("systemd-analyze security: {exposure}");
    assert!(
        exposure.contains(" OK") || exposure.contains("SAFE"),
        "{sec}"
    );
    // The configuration shipped is one the service accepts (its policy
    // path aside, which the operator writes).
    let conf = std::fs::read_to_string(root.join("etc/ispf/ispf.toml")).unwrap();
    let policy = ws().join("examples/care-unit.json");
    let test_conf = dir.join("ispf.toml");
    std::fs::write(
        &test_conf,
        conf.replace("/etc/ispf/policy.json", policy.to_str().unwrap()),
    )
    .unwrap();
    let out = Command::new(&bin)
        .args(["service", "--check", "--config"])
        .arg(&test_conf)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A bad key is an error with its path and line.
    std::fs::write(
        &test_conf,
        "interfaces = [\"br0\"]\npolicy = \"/p.json\"\nmetrics_adress = \"x\"\n",
    )
    .unwrap();
    let out = Command::new(&bin)
        .args(["service", "--check", "--config"])
        .arg(&test_conf)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("line 3") && err.contains("metrics_adress"),
        "{err}"
    );
    // The man pages render.
    let man = std::fs::read(root.join("usr/share/man/man5/ispf-policy.5.gz")).unwrap();
    assert!(man.len() > 1000);
}
