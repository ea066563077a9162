//! First run: find the desktop's AI services by themselves — Ollama or ComfyUI answering
//! on the usual ports, Docker containers of `ollama/ollama`, ComfyUI installs in the
//! usual folders — and propose the `[[services]]` and provider entries for them.
//! Nothing is started or changed: the owner accepts the proposal (`discover --write`).

use super::docker::DockerClient;
use serde::Serialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The ports Ollama and ComfyUI use by default (the team's two Ollama containers and
/// ComfyUI).
pub const USUAL_PORTS: &[u16] = &[11434, 11435, 11436, 8188];
const PROBE_TIMEOUT: Duration = Duration::from_millis(800);

/// Something found, and what to put in the config for it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Found {
    /// `ollama` or `comfyui`.
    pub what: String,
    /// How it was found: `port 11434`, `container ollama-sparklio`, `folder D:\AI\ComfyUI`.
    pub how: String,
    /// The service name proposed.
    pub name: String,
    /// Its URL, when it answers.
    pub url: Option<String>,
    /// The proposed `[[services]]` entry (TOML).
    pub service_toml: String,
    /// The proposed provider entry (TOML), if it backs a gateway provider.
    pub provider_toml: Option<String>,
}

fn quote(s: &str) -> String {
    toml_edit::Value::from(s).to_string()
}

/// What answers on `port` of 127.0.0.1: Ollama (`/api/version`) or ComfyUI (`/system_stats`).
async fn identify(client: &reqwest::Client, port: u16) -> Option<(&'static str, String)> {
    let base = format!("http://127.0.0.1:{port}");
    let get = |path: &str| {
        let url = format!("{base}{path}");
        let client = client.clone();
        async move {
            let r = client.get(url).send().await.ok()?;
            r.status().is_success().then_some(())?;
            r.json::<serde_json::Value>().await.ok()
        }
    };
    if let Some(v) = get("/api/version").await {
        if v.get("version").is_some() {
            return Some(("ollama", base));
        }
    }
    if let Some(v) = get("/system_stats").await {
        if v.get("system").is_some() || v.get("devices").is_some() {
            return Some(("comfyui", base));
        }
    }
    None
}

/// Services answering on `ports` of this machine, except the Desk's own listeners.
pub async fn probe_ports(ports: &[u16], own: &[SocketAddr]) -> Vec<Found> {
    let Ok(client) = reqwest::Client::builder()
        .timeout(PROBE_TIMEOUT)
        .no_proxy()
        .build()
    else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for &port in ports {
        if own.iter().any(|a| a.port() == port) {
            continue;
        }
        let Some((what, url)) = identify(&client, port).await else {
            continue;
        };
        let name = if what == "ollama" {
            format!("ollama-{port}")
        } else {
            "comfyui".to_string()
        };
        let (service_toml, provider_toml) = if what == "ollama" {
            (
                format!(
                    "[[services]]\nname = {}\nkind = \"external\"\nport = {port}\nhealth = {{ url = {} }}\nprovides = [\"ollama\"]\n",
                    quote(&name),
                    quote(&format!("{url}/api/version"))
                ),
                Some(format!(
                    "[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = {}\n",
                    quote(&url)
                )),
            )
        } else {
            (
                format!(
                    "[[services]]\nname = \"comfyui\"\nkind = \"external\"\nport = {port}\nhealth = {{ url = {} }}\nprovides = [\"comfyui\"]\n",
                    quote(&format!("{url}/system_stats"))
                ),
                Some(format!(
                    "[media.providers.comfyui]\nkind = \"comfyui\"\nbase_url = {}\n",
                    quote(&url)
                )),
            )
        };
        out.push(Found {
            what: what.into(),
            how: format!("port {port}"),
            name,
            url: Some(url),
            service_toml,
            provider_toml,
        });
    }
    out
}

/// Docker containers of `ollama/ollama` (Docker Desktop's named pipe on Windows, the
/// Unix socket elsewhere, or `docker_host`).
pub async fn docker_ollamas(docker_host: Option<&str>) -> Result<Vec<Found>, String> {
    let docker = DockerClient::new(docker_host);
    let list = docker
        .containers_of("ollama/ollama", 11434)
        .await
        .map_err(|e| e.message())?;
    Ok(list
        .into_iter()
        .map(|(name, image, state, port)| {
            let url = port.map(|p| format!("http://127.0.0.1:{p}"));
            let health = url
                .as_ref()
                .map(|u| format!("health = {{ url = {} }}\n", quote(&format!("{u}/api/version"))))
                .unwrap_or_default();
            Found {
                what: "ollama".into(),
                how: format!("container {name} ({image}, {state})"),
                service_toml: format!(
                    "[[services]]\nname = {}\nkind = \"docker\"\ncontainer = {}\n{}{health}provides = [\"ollama\"]\n",
                    quote(&name),
                    quote(&name),
                    port.map(|p| format!("port = {p}\n")).unwrap_or_default(),
                ),
                provider_toml: url.as_ref().map(|u| {
                    format!("[llm.providers.ollama]\nkind = \"ollama\"\nbase_url = {}\n", quote(u))
                }),
                name,
                url,
            }
        })
        .collect())
}

/// A ComfyUI checkout (`main.py` beside `comfy/`) at `dir`, and the Python to run it
/// with (the portable build's `python_embeded`, else `python`).
fn comfy_at(dir: &Path) -> Option<(PathBuf, String)> {
    let (app, root) = if dir.join("main.py").is_file() && dir.join("comfy").is_dir() {
        (dir.to_path_buf(), dir.parent().map(Path::to_path_buf))
    } else if dir.join("ComfyUI/main.py").is_file() && dir.join("ComfyUI/comfy").is_dir() {
        (dir.join("ComfyUI"), Some(dir.to_path_buf()))
    } else {
        return None;
    };
    let embedded = root
        .iter()
        .map(|r| {
            r.join("python_embeded").join(if cfg!(windows) {
                "python.exe"
            } else {
                "python"
            })
        })
        .find(|p| p.is_file());
    let python = embedded.map_or_else(
        || {
            if cfg!(windows) {
                "python.exe".to_string()
            } else {
                "python3".to_string()
            }
        },
        |p| p.display().to_string(),
    );
    Some((app, python))
}

/// The usual places a ComfyUI is installed.
pub fn usual_comfy_dirs() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if cfg!(windows) {
        for drive in ["C:", "D:", "E:"] {
            for sub in [
                "ComfyUI_windows_portable",
                "ComfyUI",
                "AI\\ComfyUI",
                "AI\\ComfyUI_windows_portable",
            ] {
                dirs.push(PathBuf::from(format!("{drive}\\{sub}")));
            }
        }
    }
    if let Some(home) = directories::UserDirs::new().map(|u| u.home_dir().to_path_buf()) {
        dirs.push(home.join("ComfyUI"));
        dirs.push(home.join("ComfyUI_windows_portable"));
    }
    dirs
}

/// ComfyUI installs in `dirs` and one level below them. Each is proposed by its absolute
/// path: a relative `cwd` would be read against whatever folder the Desk later starts in
/// (System32, for the Windows service).
pub fn comfy_installs(dirs: &[PathBuf]) -> Vec<Found> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    for d in dirs {
        let Ok(d) = std::path::absolute(d) else {
            continue;
        };
        candidates.push(d.clone());
        if let Ok(entries) = std::fs::read_dir(d) {
            candidates.extend(
                entries
                    .flatten()
                    .map(|e| e.path())
                    .filter(|p| p.is_dir())
                    .take(64),
            );
        }
    }
    let mut out: Vec<Found> = Vec::new();
    for c in candidates {
        let Some((app, python)) = comfy_at(&c) else {
            continue;
        };
        if out
            .iter()
            .any(|f| f.how.ends_with(&app.display().to_string()))
        {
            continue;
        }
        out.push(Found {
            what: "comfyui".into(),
            how: format!("folder {}", app.display()),
            name: "comfyui".into(),
            url: None,
            service_toml: format!(
                "[[services]]\nname = \"comfyui\"\nkind = \"process\"\ncommand = {}\nargs = [\"main.py\", \"--listen\", \"127.0.0.1\", \"--port\", \"8188\"]\ncwd = {}\nport = 8188\nhealth = {{ url = \"http://127.0.0.1:8188/system_stats\" }}\nprovides = [\"comfyui\"]\n",
                quote(&python),
                quote(&app.display().to_string())
            ),
            provider_toml: Some(
                "[media.providers.comfyui]\nkind = \"comfyui\"\nbase_url = \"http://127.0.0.1:8188\"\n".into(),
            ),
        });
    }
    out
}

/// What to look through.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Search {
    /// Ports of 127.0.0.1 to probe (empty: [`USUAL_PORTS`]).
    pub ports: Vec<u16>,
    /// Folders to look for ComfyUI in (and one level below), besides the usual places.
    pub dirs: Vec<PathBuf>,
    /// Do not ask the Docker engine for containers.
    pub no_docker: bool,
}

/// Why a folder a request names may not be searched: the folder found decides the
/// command a proposal runs (its `python_embeded`), so it must be this machine's own. A
/// network share (`\\host\share`, `//host/share`) would let whoever controls that host
/// choose what the Desk runs once accepted, and on Windows merely looking there sends the
/// Desk user's NTLM credentials to it; a relative path depends on the Desk's working folder.
pub fn remote_or_relative(dir: &Path) -> Option<&'static str> {
    let text = dir.to_string_lossy();
    let mut chars = text.chars();
    let is_sep = |c: Option<char>| matches!(c, Some('\\' | '/'));
    if is_sep(chars.next()) && is_sep(chars.next()) {
        return Some(
            "a network path (\\\\host\\share) is not searched: name a folder of this machine",
        );
    }
    let drive_absolute = text.len() >= 3
        && text.as_bytes()[0].is_ascii_alphabetic()
        && text.as_bytes()[1] == b':'
        && matches!(text.as_bytes()[2], b'\\' | b'/');
    if !dir.is_absolute() && !drive_absolute {
        return Some("must be an absolute path");
    }
    None
}

/// Most ports and folders one search looks at (it is bounded like every request).
pub const MAX_PORTS: usize = 32;
pub const MAX_DIRS: usize = 16;

/// What a search found, and what it looked at.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Findings {
    /// New services (names already configured are left out).
    pub found: Vec<Found>,
    pub ports: Vec<u16>,
    pub folders: usize,
    /// Why the Docker engine was not asked or did not answer.
    pub docker_error: Option<String>,
}

/// Everything `discover` proposes for this config: Ollama containers, services on the
/// probed ports (a container already found for a port is that one entry), ComfyUI
/// folders (unless a ComfyUI already answers), minus the services already configured.
pub async fn find_all(config: &crate::config::Config, search: &Search) -> Findings {
    // The Desk's own listeners are never proposed as services.
    let own: Vec<SocketAddr> = config
        .server
        .bind
        .addresses()
        .iter()
        .chain(config.fronts.ollama.bind.iter())
        .chain(config.fronts.comfyui.bind.iter())
        .filter_map(|a| a.parse().ok())
        .collect();
    let ports: Vec<u16> = if search.ports.is_empty() {
        USUAL_PORTS.to_vec()
    } else {
        search.ports.iter().copied().take(MAX_PORTS).collect()
    };
    let mut found: Vec<Found> = Vec::new();
    let mut docker_error = None;
    if search.no_docker {
        docker_error = Some("not asked".into());
    } else {
        match docker_ollamas(config.supervisor.docker_host.as_deref()).await {
            Ok(list) => found.extend(list),
            Err(e) => docker_error = Some(e),
        }
    }
    for f in probe_ports(&ports, &own).await {
        if !found.iter().any(|x| x.url == f.url && x.url.is_some()) {
            found.push(f);
        }
    }
    let mut dirs: Vec<PathBuf> = search.dirs.iter().take(MAX_DIRS).cloned().collect();
    dirs.extend(usual_comfy_dirs());
    let folders = dirs.len();
    // File system calls block: never on a connection thread (a slow disk would stall
    // every connection sharing it).
    let installs = tokio::task::spawn_blocking(move || comfy_installs(&dirs))
        .await
        .unwrap_or_default();
    for f in installs {
        // A ComfyUI already answering on its port is kept as that (external) service.
        if !found.iter().any(|x| x.what == "comfyui") {
            found.push(f);
        }
    }
    found.retain(|f| !config.services.iter().any(|s| s.name == f.name));
    Findings {
        found,
        ports,
        folders,
        docker_error,
    }
}

/// Add the accepted entries to the config file's text (comments and order kept): each
/// service unless one of its name exists, each provider table unless it exists. A
/// provider table the file already has keeps its settings and gets only the keys it
/// lacks (a table with only `timeout_s` gets the found `base_url`).
pub fn write_into(config_text: &str, found: &[Found]) -> Result<(String, Vec<String>), String> {
    let mut doc: toml_edit::DocumentMut = config_text
        .parse()
        .map_err(|e| format!("the config file is not TOML: {e}"))?;
    let mut added = Vec::new();
    for f in found {
        let service: toml_edit::DocumentMut = f
            .service_toml
            .parse()
            .map_err(|e| format!("proposal for {}: {e}", f.name))?;
        let exists = doc
            .get("services")
            .and_then(|s| s.as_array_of_tables())
            .is_some_and(|a| {
                a.iter()
                    .any(|t| t.get("name").and_then(|n| n.as_str()) == Some(&f.name))
            });
        if !exists {
            let table = service["services"]
                .as_array_of_tables()
                .and_then(|a| a.get(0))
                .cloned()
                .ok_or("a proposal without a service")?;
            if doc.get("services").is_none() {
                doc["services"] = toml_edit::Item::ArrayOfTables(toml_edit::ArrayOfTables::new());
            }
            doc["services"]
                .as_array_of_tables_mut()
                .ok_or("services is not a list of tables")?
                .push(table);
            added.push(format!("service {}", f.name));
        }
        if let Some(p) = &f.provider_toml {
            let provider: toml_edit::DocumentMut = p
                .parse()
                .map_err(|e| format!("proposal for {}: {e}", f.name))?;
            for (section, _) in provider.iter() {
                for (kind, table) in provider[section].as_table().into_iter().flatten() {
                    for (name, body) in table.as_table().into_iter().flatten() {
                        let present = doc
                            .get_mut(section)
                            .and_then(|s| s.get_mut(kind))
                            .and_then(|k| k.get_mut(name));
                        if let Some(existing) = present {
                            // The file's own settings stay; what it leaves to the defaults
                            // (e.g. only `timeout_s` written) gets the found service's URL.
                            let existing = existing
                                .as_table_like_mut()
                                .ok_or_else(|| format!("{section}.{kind}.{name} is not a table"))?;
                            let has_instances = existing.contains_key("instances");
                            for (key, value) in
                                body.as_table_like().into_iter().flat_map(|t| t.iter())
                            {
                                // Its kind is the file's or the defaults' to say.
                                let skip = key == "kind" || (key == "base_url" && has_instances);
                                if skip || existing.contains_key(key) {
                                    continue;
                                }
                                existing.insert(key, value.clone());
                                added.push(format!("{section}.{kind}.{name}.{key}"));
                            }
                            continue;
                        }
                        if doc.get(section).is_none() {
                            doc[section] = toml_edit::table();
                        }
                        if doc[section].get(kind).is_none() {
                            doc[section][kind] = toml_edit::table();
                            if let Some(t) = doc[section][kind].as_table_mut() {
                                t.set_implicit(true);
                            }
                        }
                        doc[section][kind][name] = body.clone();
                        added.push(format!("{section}.{kind}.{name}"));
                    }
                }
            }
        }
    }
    // Whether the result loads is the caller's to check, as loading reads it (layered
    // over the defaults and the environment: `load_config_edit`), before writing it.
    Ok((doc.to_string(), added))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_this_machines_absolute_folders_are_searched() {
        for (dir, refused) in [
            (r"C:\ComfyUI_windows_portable", false),
            ("D:/AI/ComfyUI", false),
            ("/opt/ComfyUI", false),
            (r"\\host\share\ComfyUI", true),
            ("//host/share", true),
            (r"\\?\UNC\host\share", true),
            (r"\/host/share", true),
            ("ComfyUI", true),
            (r"..\ComfyUI", true),
            ("C:ComfyUI", true),
        ] {
            assert_eq!(
                remote_or_relative(Path::new(dir)).is_some(),
                refused,
                "{dir}"
            );
        }
    }

    #[test]
    fn a_fake_comfyui_folder_is_found_and_written_keeping_comments() {
        let dir = tempfile::tempdir().unwrap();
        let app = dir.path().join("ComfyUI_windows_portable/ComfyUI");
        std::fs::create_dir_all(app.join("comfy")).unwrap();
        std::fs::write(app.join("main.py"), "").unwrap();
        let found = comfy_installs(&[dir.path().to_path_buf()]);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(
            found[0].how.contains("ComfyUI_windows_portable"),
            "{found:?}"
        );
        let text = "# my config\n[server]\nbind = \"127.0.0.1:11500\" # keep me\n";
        let (written, added) = write_into(text, &found).unwrap();
        assert!(
            written.contains("# keep me") && written.contains("# my config"),
            "{written}"
        );
        assert_eq!(added, ["service comfyui", "media.providers.comfyui"]);
        let config: crate::config::Config = toml::from_str(&written).unwrap();
        assert_eq!(config.services[0].name, "comfyui");
        assert!(config.media.providers.contains_key("comfyui"));
        // Accepting twice adds nothing more.
        let (again, added) = write_into(&written, &found).unwrap();
        assert!(added.is_empty(), "{added:?}");
        assert_eq!(again, written);
    }
}
