//! `config init --profile NAME`: write a machine's config template (see
//! `sparklio_core::config::PROFILES`) where the config file is looked for, never over an
//! existing file unless asked (`--force`), with the owner's paths and addresses filled in.

use sparklio_core::config::PROFILES;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

/// The ComfyUI folder the gpu-desktop template names.
const TEMPLATE_COMFYUI_DIR: &str = r"D:\AI\ComfyUI";
/// The placeholder of the Desk's Tailscale address in the template's bind lines.
const TEMPLATE_TAILSCALE_IP: &str = "100.x.y.z";
const TEMPLATE_TRUSTED: &str = r#"trusted_networks = ["127.0.0.0/8", "::1/128"]"#;

/// What the owner tells `config init`.
#[derive(Debug, Default, Clone)]
pub struct Answers {
    /// The portable ComfyUI folder (holding `python_embeded` and `ComfyUI`).
    pub comfyui_dir: Option<PathBuf>,
    /// This machine's Tailscale address, filled into the bind examples.
    pub tailscale_ip: Option<IpAddr>,
    /// Extra networks whose clients need no key (e.g. the Mac mini's Tailscale address).
    pub trust: Vec<String>,
}

pub fn names() -> String {
    PROFILES
        .iter()
        .map(|(n, _)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

pub fn template(name: &str) -> Result<&'static str, String> {
    PROFILES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .ok_or_else(|| format!("unknown profile {name:?} (known: {})", names()))
}

/// The template with the answers filled in.
pub fn render(name: &str, answers: &Answers) -> Result<String, String> {
    let mut text = template(name)?.to_string();
    if let Some(dir) = &answers.comfyui_dir {
        let dir = dir.to_string_lossy();
        let dir = dir.trim_end_matches(['\\', '/']);
        if dir.contains('\'') || dir.contains('\n') {
            return Err(format!(
                "--comfyui-dir {dir:?}: a path with ' cannot be written as a TOML literal"
            ));
        }
        text = text.replace(TEMPLATE_COMFYUI_DIR, dir);
    }
    if let Some(ip) = answers.tailscale_ip {
        text = text.replace(TEMPLATE_TAILSCALE_IP, &ip.to_string());
    }
    if !answers.trust.is_empty() {
        let mut nets = vec!["127.0.0.0/8".to_string(), "::1/128".to_string()];
        for t in &answers.trust {
            let net = sparklio_core::config::parse_network(t).ok_or_else(|| {
                format!("--trust {t:?}: not an address or network (100.101.102.103, 100.64.0.0/10)")
            })?;
            nets.push(net.to_string());
        }
        let list = nets
            .iter()
            .map(|n| format!("{n:?}"))
            .collect::<Vec<_>>()
            .join(", ");
        text = text.replace(TEMPLATE_TRUSTED, &format!("trusted_networks = [{list}]"));
    }
    Ok(text)
}

/// Write the rendered template to `path` unless a file is there (or `force`).
/// Returns whether it was written.
pub fn write(path: &Path, text: &str, force: bool) -> std::io::Result<bool> {
    if path.exists() && !force {
        return Ok(false);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, text)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sparklio_core::config::{ConfigInput, ServiceKind};
    use sparklio_core::load_config as load;

    fn load_text(text: &str) -> sparklio_core::config::LoadedConfig {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sparklio-desk.toml");
        std::fs::write(&path, text).unwrap();
        load(&ConfigInput {
            config_flag: Some(path),
            ..Default::default()
        })
        .unwrap_or_else(|p| panic!("template does not load: {p:?}"))
    }

    #[test]
    fn gpu_desktop_template_loads_and_has_the_desktop_layout() {
        let l = load_text(template("gpu-desktop").unwrap());
        let c = &l.config;
        assert_eq!(c.server.bind.addresses(), ["127.0.0.1:11500"]);
        assert_eq!(c.server.trusted_networks, vec!["127.0.0.0/8", "::1/128"]);
        assert_eq!(
            c.supervisor.docker_host.as_deref(),
            Some("npipe:////./pipe/docker_engine")
        );
        let names: Vec<_> = c.services.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["ollama-sparklio", "ollama-lab", "comfyui"]);
        assert_eq!(c.services[0].port, Some(11434));
        assert_eq!(c.services[1].port, Some(11435));
        assert_eq!(
            c.llm.providers["ollama_lab"].base_url.as_deref(),
            Some("http://127.0.0.1:11435")
        );
        let comfy = &c.services[2];
        assert_eq!(comfy.kind, ServiceKind::Process);
        let args = comfy.args.join(" ");
        assert!(args.contains("--listen 127.0.0.1"), "{args}");
        // Through a pipe, Windows' Python writes the ANSI code page, block-buffered.
        assert_eq!(
            comfy.env.get("PYTHONIOENCODING").map(String::as_str),
            Some("utf-8")
        );
        assert_eq!(
            comfy.env.get("PYTHONUNBUFFERED").map(String::as_str),
            Some("1")
        );
        // Nothing in the profile listens on every interface.
        assert!(
            crate::listen::warnings(c).is_empty(),
            "{:?}",
            crate::listen::warnings(c)
        );
    }

    #[test]
    fn answers_fill_in_paths_addresses_and_trusted_networks() {
        let answers = Answers {
            comfyui_dir: Some(PathBuf::from(r"C:\Users\김민수\AI\ComfyUI Portable\")),
            tailscale_ip: Some("100.120.180.42".parse().unwrap()),
            trust: vec!["100.101.102.103".into()],
        };
        let text = render("gpu-desktop", &answers).unwrap();
        assert!(!text.contains(TEMPLATE_COMFYUI_DIR));
        assert!(text.contains(r#""127.0.0.1:11500", "100.120.180.42:11500""#));
        let l = load_text(&text);
        let comfy = &l.config.services[2];
        assert_eq!(
            comfy.command.as_deref(),
            Some(r"C:\Users\김민수\AI\ComfyUI Portable\python_embeded\python.exe")
        );
        assert_eq!(
            comfy.cwd.as_deref(),
            Some(Path::new(r"C:\Users\김민수\AI\ComfyUI Portable\ComfyUI"))
        );
        assert_eq!(
            l.config.server.trusted_networks,
            vec!["127.0.0.0/8", "::1/128", "100.101.102.103/32"]
        );
    }

    #[test]
    fn bad_answers_and_unknown_profiles_are_refused() {
        assert!(render("laptop", &Answers::default()).is_err());
        let quote = Answers {
            comfyui_dir: Some(PathBuf::from("D:/it's")),
            ..Default::default()
        };
        assert!(render("gpu-desktop", &quote).is_err());
        let bad_net = Answers {
            trust: vec!["not-a-network".into()],
            ..Default::default()
        };
        assert!(render("gpu-desktop", &bad_net).is_err());
    }

    #[test]
    fn write_never_replaces_an_existing_file_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested").join("sparklio-desk.toml");
        assert!(write(&path, "a = 1\n", false).unwrap());
        assert!(!write(&path, "b = 2\n", false).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a = 1\n");
        assert!(write(&path, "b = 2\n", true).unwrap());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "b = 2\n");
    }
}
