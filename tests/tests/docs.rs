//! The documentation that ships links only to what ships: every relative
//! link in the README and in `docs/` leads to a file of this repository.

use std::path::{Path, PathBuf};

fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("](") {
        rest = &rest[i + 2..];
        if let Some(end) = rest.find(')') {
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_leads_to_a_file_in_the_repository() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .canonicalize()
        .unwrap();
    let mut files = vec![root.join("README.md")];
    for e in std::fs::read_dir(root.join("docs")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "md") {
            files.push(p);
        }
    }
    let mut broken = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        for l in links(&text) {
            if l.starts_with("http://")
                || l.starts_with("https://")
                || l.starts_with("mailto:")
                || l.starts_with('#')
            {
                continue;
            }
            let target = l.split('#').next().unwrap();
            let p: PathBuf = f.parent().unwrap().join(target);
            match p.canonicalize() {
                Ok(c) if c.starts_with(&root) => {}
                Ok(_) => broken.push(format!("{}: `{l}` leaves the repository", rel(&root, f))),
                Err(_) => broken.push(format!("{}: `{l}` leads nowhere", rel(&root, f))),
            }
        }
    }
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_checker_sees_links() {
    assert_eq!(
        links("see [a](docs/x.md) and [b](../y#z)."),
        vec!["docs/x.md", "../y#z"]
    );
}

fn rel(root: &Path, f: &Path) -> String {
    f.strip_prefix(root).unwrap_or(f).display().to_string()
}
