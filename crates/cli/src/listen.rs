//! `config check` warnings for doors around the Desk: a supervised service (or the Desk
//! itself) that listens on every interface lets LAN clients bypass the keys and the usage
//! log. Read from the config only (commands, arguments, environment), no network.

use sparklio_core::config::{Config, ServiceKind};

/// Flags whose value is the address a program listens on (ComfyUI, uvicorn, llama.cpp, …).
const ADDRESS_FLAGS: &[&str] = &["--listen", "--host", "--bind", "--address", "-H"];
/// Environment variables read as listen addresses (Ollama's, generic ones).
const ADDRESS_VARS: &[&str] = &["OLLAMA_HOST", "HOST", "BIND", "LISTEN"];

fn is_every_interface(value: &str) -> bool {
    // "0.0.0.0", "0.0.0.0:11434", "::", "[::]:8188", "0.0.0.0,::" (ComfyUI), "http://0.0.0.0:…"
    let value = value
        .trim()
        .trim_start_matches("http://")
        .trim_start_matches("https://");
    value.split(',').any(|part| {
        let host = match part.trim() {
            p if p.starts_with('[') => p[1..].split(']').next().unwrap_or(""),
            p if p.matches(':').count() > 1 => p, // bare IPv6
            p => p.split(':').next().unwrap_or(""),
        };
        host == "0.0.0.0" || host == "::" || host == "*"
    })
}

/// One line per door found: `services[2] comfyui listens on every interface (--listen 0.0.0.0) …`.
pub fn warnings(config: &Config) -> Vec<String> {
    let mut out = Vec::new();
    for addr in config.server.bind.addresses() {
        if is_every_interface(addr) {
            out.push(format!(
                "server.bind {addr:?} listens on every interface (the whole LAN); bind loopback \
                 and the Tailscale address instead"
            ));
        }
    }
    for (i, svc) in config.services.iter().enumerate() {
        if svc.kind != ServiceKind::Process {
            continue;
        }
        let mut found: Option<String> = None;
        let args = &svc.args;
        for (j, arg) in args.iter().enumerate() {
            let (flag, inline) = match arg.split_once('=') {
                Some((f, v)) => (f, Some(v.to_string())),
                None => (arg.as_str(), None),
            };
            if !ADDRESS_FLAGS.contains(&flag) {
                continue;
            }
            let value = inline.or_else(|| args.get(j + 1).filter(|v| !v.starts_with('-')).cloned());
            match value {
                Some(v) if is_every_interface(&v) => found = Some(format!("{flag} {v}")),
                // ComfyUI: a bare `--listen` means 0.0.0.0,::
                None if flag == "--listen" => found = Some("--listen without an address".into()),
                _ => {}
            }
        }
        for (k, v) in &svc.env {
            if ADDRESS_VARS.contains(&k.as_str()) && is_every_interface(v) {
                found = Some(format!("{k}={v}"));
            }
        }
        if let Some(why) = found {
            out.push(format!(
                "services[{i}] {} listens on every interface ({why}): LAN clients can bypass the \
                 Desk's keys and usage log; use 127.0.0.1",
                svc.name
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparklio_core::config::ServiceConfig;

    fn process(name: &str, args: &[&str], env: &[(&str, &str)]) -> ServiceConfig {
        let v: serde_json::Value = serde_json::json!({
            "name": name, "kind": "process", "command": "x",
            "args": args, "env": env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::BTreeMap<_, _>>(),
        });
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn finds_every_kind_of_all_interface_listener() {
        let c = Config {
            services: vec![
                process(
                    "comfy",
                    &["main.py", "--listen", "0.0.0.0", "--port", "8188"],
                    &[],
                ),
                process(
                    "comfy-bare",
                    &["main.py", "--listen", "--port", "8188"],
                    &[],
                ),
                process("ollama", &["serve"], &[("OLLAMA_HOST", "0.0.0.0:11434")]),
                process("uvicorn", &["--host=::"], &[]),
                process(
                    "fine",
                    &["--listen", "127.0.0.1"],
                    &[("OLLAMA_HOST", "127.0.0.1:11434")],
                ),
            ],
            ..Config::default()
        };
        let w = warnings(&c);
        assert_eq!(w.len(), 4, "{w:#?}");
        assert!(w[0].starts_with("services[0] comfy listens on every interface (--listen 0.0.0.0)"));
        assert!(w[1].contains("--listen without an address"));
        assert!(w[2].contains("OLLAMA_HOST=0.0.0.0:11434"));
        assert!(w[3].contains("--host ::"));
    }

    #[test]
    fn the_desks_own_bind() {
        let mut c = Config::default();
        assert!(warnings(&c).is_empty());
        c.server.bind = "0.0.0.0:11500".into();
        assert_eq!(warnings(&c).len(), 1);
        c.server.bind = "[::]:11500".into();
        assert_eq!(warnings(&c).len(), 1);
        c.server.bind = "100.120.180.42:11500".into();
        assert!(warnings(&c).is_empty());
    }

    #[test]
    fn address_forms() {
        for yes in [
            "0.0.0.0",
            "0.0.0.0:8188",
            "::",
            "[::]:8188",
            "0.0.0.0,::",
            "http://0.0.0.0:11434",
        ] {
            assert!(is_every_interface(yes), "{yes}");
        }
        for no in [
            "127.0.0.1",
            "127.0.0.1:8188",
            "::1",
            "[::1]:8188",
            "100.120.180.42",
            "localhost",
        ] {
            assert!(!is_every_interface(no), "{no}");
        }
    }
}
