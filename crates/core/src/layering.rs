//! The layering rule, checked on the sources: domain modules never reach up into the
//! HTTP layer, the app wiring, or axum. Dependencies point one way:
//! `app` → `http` → domain (`llm`, `media`, `supervisor`, `flow`, `notify`, `system`,
//! `gateway`) → `store`, `config`, `runtime`, `telemetry`.

/// Modules that must not depend on `crate::http`, `crate::app` or axum.
const DOMAIN: &[&str] = &[
    "llm",
    "media",
    "supervisor",
    "notify",
    "gpu.rs",
    "notify.rs",
    "config",
    "flow",
    "store",
    "system",
    "gateway.rs",
    "runtime.rs",
    "resilience",
    "work.rs",
    "telemetry.rs",
    "contracts",
    "client.rs",
    "upstream.rs",
];

/// Source text without comments, string and char literals (so a doc comment that
/// mentions `crate::http` is not a dependency).
fn code_only(src: &str) -> String {
    let b = src.as_bytes();
    let mut out = String::with_capacity(src.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < b.len() {
                    if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if b.get(i + 1) == Some(&b'#') || b.get(i + 1) == Some(&b'"') => {
                // Raw string r"..." / r#"..."#.
                let mut j = i + 1;
                let mut hashes = 0;
                while b.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if b.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                let closing: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                while j < b.len() && !b[j..].starts_with(&closing) {
                    j += 1;
                }
                i = j + closing.len();
                out.push_str("\"\"");
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
                out.push_str("\"\"");
            }
            b'\'' if b.get(i + 2) == Some(&b'\'') || b.get(i + 1) == Some(&b'\\') => {
                // A char literal ('x', '\n'); lifetimes ('a) are left alone.
                i += 1;
                while i < b.len() && b[i] != b'\'' {
                    if b[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i += 1;
            }
            c => {
                out.push(c as char);
                i += 1;
            }
        }
    }
    out
}

/// Every way `code` names `crate::http`, `crate::app` or axum.
fn violations(code: &str) -> Vec<String> {
    let compact: String = code.split_whitespace().collect::<Vec<_>>().join(" ");
    let squeezed = compact.replace(" ::", "::").replace(":: ", "::");
    let mut found = Vec::new();
    let words = |s: &str| -> Vec<String> {
        s.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .filter(|w| !w.is_empty())
            .map(str::to_string)
            .collect()
    };
    for w in words(&squeezed) {
        let reaches_up = w.starts_with("crate::") || w.starts_with("super::");
        let parts: Vec<&str> = w.split("::").collect();
        let names_axum = w == "axum" || w.starts_with("axum::") || w.contains("::axum");
        let names_http_or_app = reaches_up
            && parts
                .iter()
                .skip_while(|p| **p == "crate" || **p == "super")
                .take(1)
                .any(|p| *p == "http" || *p == "app");
        if names_axum || names_http_or_app {
            found.push(w.clone());
        }
    }
    // Grouped imports: `use crate::{config, http::ApiError}`.
    let mut rest = squeezed.as_str();
    while let Some(i) = rest.find("crate::{") {
        let group = &rest[i + "crate::{".len()..];
        let mut depth = 1;
        let mut end = group.len();
        for (j, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = j;
                        break;
                    }
                }
                _ => {}
            }
        }
        let inner = &group[..end];
        let mut depth = 0;
        let mut item = String::new();
        let mut items = Vec::new();
        for c in inner.chars() {
            match c {
                '{' => depth += 1,
                '}' => depth -= 1,
                ',' if depth == 0 => items.push(std::mem::take(&mut item)),
                _ => item.push(c),
            }
        }
        items.push(item);
        for it in items {
            let head = it
                .trim()
                .split("::")
                .next()
                .unwrap_or("")
                .trim()
                .to_string();
            if head == "http" || head == "app" {
                found.push(format!("crate::{{{}}}", it.trim()));
            }
        }
        rest = &group[end..];
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn rust_files(path: &Path, out: &mut Vec<PathBuf>) {
        if path.is_file() {
            out.push(path.to_path_buf());
            return;
        }
        for entry in std::fs::read_dir(path).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir() {
                rust_files(&p, out);
            } else if p.extension().is_some_and(|e| e == "rs") {
                out.push(p);
            }
        }
    }

    #[test]
    fn the_checker_catches_every_form_and_ignores_comments_and_strings() {
        let caught = [
            "use crate::http::ApiError;",
            "use crate::app::SharedState;",
            "use crate::{config::Config, http::ApiError};",
            "use crate::{\n    http,\n    store::Store,\n};",
            "fn f(s: &crate::app::AppState) {}",
            "let e = crate :: http :: ApiError::internal(\"x\");",
            "use axum::http::StatusCode;",
            "fn f() -> axum::response::Response { unreachable!() }",
            "use super::super::http::ApiError;",
        ];
        for src in caught {
            assert!(!violations(&code_only(src)).is_empty(), "missed: {src}");
        }
        let clean = [
            "/// Not `crate::http::ApiError`, see `axum`.\nfn f() {}",
            "let s = \"crate::http::x and axum\";",
            "let s = r#\"use crate::app::X;\"#;",
            "use crate::store::Store; // crate::app::AppState was here",
            "use crate::{config::Config, store::Store};",
            "use reqwest::header::HOST; let c = 'a'; fn f<'a>(x: &'a str) {}",
            "use crate::httpd::X;",
        ];
        for src in clean {
            assert!(violations(&code_only(src)).is_empty(), "false alarm: {src}");
        }
    }

    #[test]
    fn domain_modules_do_not_reach_up_into_http_app_or_axum() {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut problems = Vec::new();
        for module in DOMAIN {
            let mut files = Vec::new();
            let path = src.join(module);
            assert!(path.exists(), "{} is listed but missing", path.display());
            rust_files(&path, &mut files);
            for file in files {
                let text = std::fs::read_to_string(&file).unwrap();
                for v in violations(&code_only(&text)) {
                    problems.push(format!(
                        "{}: {v}",
                        file.strip_prefix(&src).unwrap().display()
                    ));
                }
            }
        }
        assert!(
            problems.is_empty(),
            "domain modules reach up (see docs/architecture.md):\n{}",
            problems.join("\n")
        );
    }
}
