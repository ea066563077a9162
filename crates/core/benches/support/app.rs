//! Starting a real app for a benchmark: `toml` as its config file (with a temporary data
//! folder), a free loopback port, and the given environment.

use sparklio_core::config::ConfigInput;
use std::collections::BTreeMap;

pub async fn start_app(
    dir: &tempfile::TempDir,
    toml: &str,
    env: &[(&str, &str)],
) -> sparklio_core::RunningApp {
    let n = std::fs::read_dir(dir.path()).map_or(0, std::iter::Iterator::count);
    let path = dir.path().join(format!("bench-{n}.toml"));
    // `toml` first: its top-level keys must come before any table.
    std::fs::write(
        &path,
        format!(
            "{toml}\n[storage]\ndata_dir = {:?}\n",
            dir.path().join(format!("data-{n}"))
        ),
    )
    .unwrap();
    let mut env: BTreeMap<String, String> = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    env.insert("SPARKLIO_DESK_BIND".into(), "127.0.0.1:0".into());
    let loaded = sparklio_core::load_config(&ConfigInput {
        config_flag: Some(path),
        env,
        dotenv_path: None,
        use_os_config_dir: false,
    })
    .expect("config");
    sparklio_core::start(loaded, Default::default())
        .await
        .expect("the app starts")
}
