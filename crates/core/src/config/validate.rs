//! Meaning checks on a typed config; each problem names its key.

use super::{load::Source, Config, ServiceKind};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

/// One thing wrong with the configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// Dotted key, e.g. `server.bind` or `llm.routes[2].provider` (empty: the whole file).
    pub key: String,
    pub message: String,
    pub file: Option<PathBuf>,
    pub line: Option<usize>,
    /// Where the offending value came from, when not a file line.
    pub source: Option<Source>,
}

impl Problem {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
            file: None,
            line: None,
            source: None,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => write!(f, "{}:{}: ", file.display(), line)?,
            (Some(file), None) => write!(f, "{}: ", file.display())?,
            _ => {}
        }
        if !self.key.is_empty() {
            write!(f, "{}: ", self.key)?;
        }
        write!(f, "{}", self.message)?;
        if let Some(s) = &self.source {
            if *s != Source::Default {
                write!(f, " (from {s})")?;
            }
        }
        Ok(())
    }
}

/// Parse a trusted-network entry: a CIDR, or a bare address meaning just that host.
pub fn parse_network(s: &str) -> Option<ipnet::IpNet> {
    s.parse::<ipnet::IpNet>()
        .ok()
        .or_else(|| s.parse::<std::net::IpAddr>().ok().map(ipnet::IpNet::from))
}

fn check_url(problems: &mut Vec<Problem>, key: String, url: &str) {
    match reqwest::Url::parse(url) {
        Ok(u) if u.scheme() == "http" || u.scheme() == "https" => {}
        Ok(u) => problems.push(Problem::new(
            key,
            format!(
                "{url:?} must be an http:// or https:// URL, not {}://",
                u.scheme()
            ),
        )),
        Err(e) => problems.push(Problem::new(key, format!("{url:?} is not a URL: {e}"))),
    }
}

/// The provider kinds this build can construct. The registries live above `config`
/// (in `llm` and `media`), so the caller that knows them passes them in.
#[derive(Debug, Clone, Copy)]
pub struct KnownKinds<'a> {
    pub llm: &'a [&'a str],
    pub media: &'a [&'a str],
}

/// Every meaning problem in `config` (types were checked while loading).
pub fn validate(config: &Config, kinds: &KnownKinds<'_>) -> Vec<Problem> {
    let mut p = Vec::new();
    let s = &config.server;
    if s.bind.addresses().is_empty() {
        p.push(Problem::new(
            "server.bind",
            "needs at least one address:port",
        ));
    }
    for (i, addr) in s.bind.addresses().iter().enumerate() {
        if let Err(e) = addr.parse::<SocketAddr>() {
            let key = if s.bind.addresses().len() == 1 {
                "server.bind".to_string()
            } else {
                format!("server.bind[{i}]")
            };
            p.push(Problem::new(
                key,
                format!("{addr:?} is not an address:port like 127.0.0.1:11500 ({e})"),
            ));
        }
    }
    if let Some(url) = &s.public_url {
        check_url(&mut p, "server.public_url".into(), url);
    }
    for (i, origin) in s.cors_origins.iter().enumerate() {
        match reqwest::Url::parse(origin) {
            Ok(u) if (u.scheme() == "http" || u.scheme() == "https")
                && u.path() == "/"
                && u.query().is_none()
                && !origin.ends_with('/') => {}
            _ => p.push(Problem::new(
                format!("server.cors_origins[{i}]"),
                format!("{origin:?} is not an origin like http://100.64.0.5:3000 (scheme, host, port; no path)"),
            )),
        }
    }
    let mut names = BTreeSet::new();
    for (i, k) in s.keys.iter().enumerate() {
        if k.key.trim().len() < 16 {
            p.push(Problem::new(
                format!("server.keys[{i}].key"),
                "keys must be at least 16 characters (e.g. `openssl rand -hex 24`)",
            ));
        }
        if k.name.trim().is_empty() || !names.insert(k.name.as_str()) {
            p.push(Problem::new(
                format!("server.keys[{i}].name"),
                "every key needs its own non-empty name",
            ));
        }
        for (j, f) in k.fronts.iter().flatten().enumerate() {
            if !["sparklio", "ollama", "openai", "comfyui"].contains(&f.as_str()) {
                p.push(Problem::new(
                    format!("server.keys[{i}].fronts[{j}]"),
                    format!("{f:?} is not a front (sparklio, ollama, openai, comfyui)"),
                ));
            }
        }
        if let Some(r) = &k.media_return {
            check_return(&mut p, &format!("server.keys[{i}].media_return"), r);
        }
    }
    let l = &s.limits;
    if l.max_connections < 8 || l.loopback_reserve >= l.max_connections {
        p.push(Problem::new(
            "server.limits.max_connections",
            "must be at least 8 and larger than loopback_reserve",
        ));
    }
    if l.connection_threads > super::MAX_CONNECTION_THREADS {
        p.push(Problem::new(
            "server.limits.connection_threads",
            format!(
                "at most {} (0: one per core)",
                super::MAX_CONNECTION_THREADS
            ),
        ));
    }
    if l.busy_poll_us > super::MAX_BUSY_POLL_US {
        p.push(Problem::new(
            "server.limits.busy_poll_us",
            format!("at most {} (0: never)", super::MAX_BUSY_POLL_US),
        ));
    }
    for (key, v) in [
        ("server.limits.header_timeout_s", l.header_timeout_s),
        ("server.limits.body_timeout_s", l.body_timeout_s),
    ] {
        if !(v > 0.0 && v.is_finite()) {
            p.push(Problem::new(key, "must be a positive number of seconds"));
        }
    }
    for (i, net) in s.trusted_networks.iter().enumerate() {
        if parse_network(net).is_none() {
            p.push(Problem::new(
                format!("server.trusted_networks[{i}]"),
                format!("{net:?} is not a network like 192.168.0.0/24 or an address"),
            ));
        }
    }
    for (name, keys) in [
        ("server.api_keys", &s.api_keys),
        ("server.admin_keys", &s.admin_keys),
    ] {
        for (i, k) in keys.iter().enumerate() {
            if k.trim().len() < 16 {
                p.push(Problem::new(
                    format!("{name}[{i}]"),
                    "keys must be at least 16 characters (e.g. `openssl rand -hex 24`)",
                ));
            }
        }
    }
    if s.max_body_bytes < 1024 {
        p.push(Problem::new(
            "server.max_body_bytes",
            "must be at least 1024",
        ));
    }

    for (name, prov) in &config.llm.providers {
        let key = format!("llm.providers.{name}");
        if !kinds.llm.contains(&prov.kind.as_str()) {
            p.push(Problem::new(
                format!("{key}.kind"),
                format!(
                    "{:?} is not a provider kind (have: {})",
                    prov.kind,
                    kinds.llm.join(", ")
                ),
            ));
        }
        if prov.kind == "ollama" && prov.base_url.is_none() {
            p.push(Problem::new(
                format!("{key}.base_url"),
                "an ollama provider needs a base_url",
            ));
        }
        if let Some(url) = &prov.base_url {
            check_url(&mut p, format!("{key}.base_url"), url);
        }
        if !(prov.timeout_s > 0.0 && prov.timeout_s.is_finite()) {
            p.push(Problem::new(
                format!("{key}.timeout_s"),
                "must be a positive number of seconds",
            ));
        }
    }
    let providers: BTreeSet<&str> = config.llm.providers.keys().map(String::as_str).collect();
    let known = |p: &str| providers.contains(p);
    if !known(&config.llm.default_route.provider) {
        p.push(Problem::new(
            "llm.default_route.provider",
            format!(
                "{:?} is not a provider in [llm.providers] (have: {})",
                config.llm.default_route.provider,
                providers.iter().copied().collect::<Vec<_>>().join(", ")
            ),
        ));
    }
    if let Some(dir) = &config.llm.prompt_dir {
        if !dir.is_dir() {
            p.push(Problem::new(
                "llm.prompt_dir",
                format!("{} is not a folder", dir.display()),
            ));
        }
    }
    for (i, r) in config.llm.routes.iter().enumerate() {
        if !known(&r.provider) {
            p.push(Problem::new(
                format!("llm.routes[{i}].provider"),
                format!("{:?} is not a provider in [llm.providers]", r.provider),
            ));
        }
        for (j, m) in r.modes.iter().enumerate() {
            if !["json", "text", "chat"].contains(&m.as_str()) {
                p.push(Problem::new(
                    format!("llm.routes[{i}].modes[{j}]"),
                    format!("{m:?} is not a mode (json, text, chat)"),
                ));
            }
        }
    }

    for (name, prov) in &config.media.providers {
        let key = format!("media.providers.{name}");
        if !kinds.media.contains(&prov.kind.as_str()) {
            p.push(Problem::new(
                format!("{key}.kind"),
                format!(
                    "{:?} is not a media provider kind ({})",
                    prov.kind,
                    kinds.media.join(", ")
                ),
            ));
        }
        if let Some(url) = &prov.base_url {
            check_url(&mut p, format!("{key}.base_url"), url);
        }
        if !(prov.timeout_s() > 0.0 && prov.timeout_s().is_finite()) {
            p.push(Problem::new(
                format!("{key}.timeout_s"),
                "must be a positive number of seconds",
            ));
        }
    }

    validate_media(config, &mut p);

    // Compared without case: each service has a log file named after it, and Windows'
    // file names ignore case ("ComfyUI" and "comfyui" would write one file).
    let mut names = BTreeSet::new();
    // One service per container: two runners would start and stop one container. (Two
    // services may name one port: alternatives, such as Ollama in Docker or native, where
    // whichever holds it is reported to the other as a process it did not start.)
    let mut containers: BTreeMap<&str, &str> = BTreeMap::new();
    for (i, svc) in config.services.iter().enumerate() {
        let key = format!("services[{i}]");
        if svc.name.trim().is_empty()
            || !svc
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c))
        {
            p.push(Problem::new(
                format!("{key}.name"),
                "must be letters, digits, '-', '_' or '.' (it is used in URLs)",
            ));
        }
        if !names.insert(svc.name.to_ascii_lowercase()) {
            p.push(Problem::new(
                format!("{key}.name"),
                format!(
                    "{:?} is used twice (names are compared without case: each names a log file)",
                    svc.name
                ),
            ));
        }
        if let Some(c) = svc.container.as_deref().filter(|c| !c.is_empty()) {
            if let Some(other) = containers.insert(c, svc.name.as_str()) {
                p.push(Problem::new(
                    format!("{key}.container"),
                    format!("container {c:?} is already service {other:?}'s"),
                ));
            }
        }
        match svc.kind {
            ServiceKind::Process if svc.command.as_deref().is_none_or(str::is_empty) => {
                p.push(Problem::new(
                    format!("{key}.command"),
                    "a process service needs a command",
                ));
            }
            ServiceKind::Docker if svc.container.as_deref().is_none_or(str::is_empty) => {
                p.push(Problem::new(
                    format!("{key}.container"),
                    "a docker service needs a container name",
                ));
            }
            ServiceKind::External if svc.health.is_none() => p.push(Problem::new(
                format!("{key}.health"),
                "an external service needs a health url to watch",
            )),
            _ => {}
        }
        if let Some(h) = &svc.health {
            check_url(&mut p, format!("{key}.health.url"), &h.url);
            if h.interval_ms == 0 || h.timeout_ms == 0 || h.failures == 0 {
                p.push(Problem::new(
                    format!("{key}.health"),
                    "interval_ms, timeout_ms and failures must be positive",
                ));
            }
        }
        if svc.backoff.initial_ms == 0 || svc.backoff.max_ms < svc.backoff.initial_ms {
            p.push(Problem::new(
                format!("{key}.backoff"),
                "initial_ms must be positive and max_ms at least initial_ms",
            ));
        }
        if svc.crash_loop.restarts == 0 || svc.crash_loop.within_s == 0 {
            p.push(Problem::new(
                format!("{key}.crash_loop"),
                "restarts and within_s must be positive",
            ));
        }
        if svc.stop_timeout_ms == 0 || svc.start_timeout_ms == 0 {
            p.push(Problem::new(
                format!("{key}.stop_timeout_ms"),
                "stop_timeout_ms and start_timeout_ms must be positive",
            ));
        }
        if svc.log_lines == 0 {
            p.push(Problem::new(
                format!("{key}.log_lines"),
                "must be at least 1",
            ));
        }
        if svc.port == Some(0) {
            p.push(Problem::new(
                format!("{key}.port"),
                "must be a real port (1-65535)",
            ));
        }
        for prov in &svc.provides {
            if !config.llm.providers.contains_key(prov)
                && !config.media.providers.contains_key(prov)
            {
                p.push(Problem::new(
                    format!("{key}.provides"),
                    format!("{prov:?} is not a provider in [llm.providers] or [media.providers]"),
                ));
            }
        }
    }
    let sup = &config.supervisor;
    if sup.log_file_max_bytes < 4096 {
        p.push(Problem::new(
            "supervisor.log_file_max_bytes",
            "must be at least 4096",
        ));
    }
    if let Some(host) = &sup.docker_host {
        if !["npipe://", "unix://", "tcp://", "http://"]
            .iter()
            .any(|s| host.starts_with(s))
        {
            p.push(Problem::new(
                "supervisor.docker_host",
                format!("{host:?} must start with npipe://, unix://, tcp:// or http://"),
            ));
        }
    }
    if sup.unavailable_recheck_ms == 0 {
        p.push(Problem::new(
            "supervisor.unavailable_recheck_ms",
            "must be positive",
        ));
    }
    if sup.docker_start_desktop && !cfg!(windows) && sup.docker_desktop_path.is_none() {
        p.push(Problem::new(
            "supervisor.docker_desktop_path",
            "must be set when docker_start_desktop = true outside Windows (the default path is Windows')",
        ));
    }
    if sup.docker_start_desktop && sup.docker_desktop_wait_s == 0 {
        p.push(Problem::new(
            "supervisor.docker_desktop_wait_s",
            "must be positive when docker_start_desktop = true",
        ));
    }
    let sys = &config.system;
    if sys.sample_interval_ms < 500 {
        p.push(Problem::new(
            "system.sample_interval_ms",
            "must be at least 500",
        ));
    }
    if sys.history_s == 0 {
        p.push(Problem::new("system.history_s", "must be positive"));
    }
    for (alias, to) in &config.fronts.openai.models {
        let key = format!("fronts.openai.models.{alias}");
        match config.llm.providers.get(&to.provider) {
            None => p.push(Problem::new(
                format!("{key}.provider"),
                format!("{:?} is not a configured llm provider", to.provider),
            )),
            Some(provider) if provider.kind != "ollama" && provider.kind != "mock" => {
                p.push(Problem::new(
                    format!("{key}.provider"),
                    format!("{:?} is not an ollama or mock provider", to.provider),
                ));
            }
            Some(_) => {}
        }
        if to.model.trim().is_empty() {
            p.push(Problem::new(format!("{key}.model"), "must name a model"));
        }
    }
    p
}

/// `url` or `base64`: what a media answer's `outputs[].data` holds.
fn check_return(p: &mut Vec<Problem>, key: &str, value: &str) {
    if value != "url" && value != "base64" {
        p.push(Problem::new(
            key.to_string(),
            format!("{value:?} is not \"url\" or \"base64\""),
        ));
    }
}

fn validate_media(config: &Config, p: &mut Vec<Problem>) {
    check_return(p, "media.default_return", &config.media.default_return);
    let m = &config.media;
    if !m.providers.is_empty() && !m.providers.contains_key(&m.default_provider) {
        p.push(Problem::new(
            "media.default_provider",
            format!(
                "{:?} is not a provider in [media.providers]",
                m.default_provider
            ),
        ));
    }
    if !m.kinds.is_empty() && !m.kinds.contains_key(&m.default_kind) {
        p.push(Problem::new(
            "media.default_kind",
            format!("{:?} is not a kind in [media.kinds]", m.default_kind),
        ));
    }
    let side_ok = |v: u32| (8..=m.max_side).contains(&v);
    for (name, k) in &m.kinds {
        let key = format!("media.kinds.{name}");
        if k.workflow.trim().is_empty() {
            p.push(Problem::new(
                format!("{key}.workflow"),
                "must name a workflow",
            ));
        }
        if !side_ok(k.width) || !side_ok(k.height) {
            p.push(Problem::new(
                key.clone(),
                format!("width and height must be 8..={}", m.max_side),
            ));
        }
    }
    for (name, t) in &m.tasks {
        let key = format!("media.tasks.{name}");
        if !m.kinds.contains_key(&t.kind) {
            p.push(Problem::new(
                format!("{key}.kind"),
                format!("{:?} is not a kind in [media.kinds]", t.kind),
            ));
        }
        if t.width.is_some_and(|v| !side_ok(v)) || t.height.is_some_and(|v| !side_ok(v)) {
            p.push(Problem::new(
                key,
                format!("width and height must be 8..={}", m.max_side),
            ));
        }
    }
    for (ratio, [w, h]) in &m.aspect_ratios {
        if !side_ok(*w) || !side_ok(*h) {
            p.push(Problem::new(
                format!("media.aspect_ratios.{ratio}"),
                format!("width and height must be 8..={}", m.max_side),
            ));
        }
    }
    for (alias, target) in &m.workflow_aliases {
        if target.trim().is_empty() {
            p.push(Problem::new(
                format!("media.workflow_aliases.{alias}"),
                "must name a workflow",
            ));
        }
    }
    if m.max_count == 0 {
        p.push(Problem::new("media.max_count", "must be at least 1"));
    }
}
