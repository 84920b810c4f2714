//! docs/policy.md as the man page ispf-policy(5): one source for the
//! policy reference. Handles what that page uses — headings, paragraphs,
//! bullet lists, tables, code blocks, `code` and **bold** — and nothing
//! else.

fn inline(s: &str) -> String {
    let s = s.replace('\\', "\\\\").replace('-', "\\-");
    let mut out = String::new();
    let mut code = false;
    let mut bold = false;
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' => {
                out.push_str(if code { "\\fR" } else { "\\fB" });
                code = !code;
            }
            '*' if chars.peek() == Some(&'*') => {
                chars.next();
                out.push_str(if bold { "\\fR" } else { "\\fB" });
                bold = !bold;
            }
            c => out.push(c),
        }
    }
    out
}

fn line_start(s: &str) -> String {
    // A line starting with `.` or `'` would be a roff request.
    if s.starts_with('.') || s.starts_with('\'') {
        format!("\\&{s}")
    } else {
        s.to_owned()
    }
}

pub fn man_page(md: &str, name: &str, section: u8, date: &str) -> String {
    let mut out = format!(
        ".TH {} {section} \"{date}\" \"ispf\" \"ispf manual\"\n",
        name.to_uppercase()
    );
    let mut in_code = false;
    for l in md.lines() {
        if l.starts_with("```") {
            out.push_str(if in_code { ".fi\n.RE\n" } else { ".RS\n.nf\n" });
            in_code = !in_code;
            continue;
        }
        if in_code {
            out.push_str(&line_start(&l.replace('\\', "\\\\")));
            out.push('\n');
            continue;
        }
        let t = l.trim();
        if let Some(h) = t.strip_prefix("# ") {
            out.push_str(&format!(
                ".SH NAME\n{name} \\- {}\n",
                inline(&h.to_lowercase())
            ));
        } else if let Some(h) = t.strip_prefix("## ") {
            out.push_str(&format!(".SH {}\n", inline(&h.to_uppercase())));
        } else if t.starts_with("| ---") {
            continue;
        } else if t.starts_with('|') {
            let cells: Vec<String> = t
                .trim_matches('|')
                .split('|')
                .map(|c| inline(c.trim()))
                .collect();
            out.push_str(&format!(
                ".TP\n{}\n{}\n",
                cells[0],
                cells[1..].join(" \\(em ")
            ));
        } else if let Some(b) = t.strip_prefix("- ") {
            out.push_str(&format!(".IP \\(bu 2\n{}\n", line_start(&inline(b))));
        } else if t.is_empty() {
            out.push_str(".PP\n");
        } else {
            out.push_str(&line_start(&inline(t)));
            out.push('\n');
        }
    }
    out
}
