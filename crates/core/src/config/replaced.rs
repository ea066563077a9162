//! A list in the config file replaces the built-in list whole (so an entry can be left
//! out), but one `[[llm.routes]]` silently dropping the four routes the team ships
//! surprised its first user: what a file's list drops is said by `config check`, the
//! start-up log and `config show`.

use serde_json::Value;
use std::fmt;
use std::path::{Path, PathBuf};

/// A built-in list of named tables that the config file replaced.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplacedDefaults {
    /// Its key, e.g. `llm.routes`.
    pub key: String,
    pub file: PathBuf,
    /// The names of the built-in entries, in order.
    pub builtin: Vec<String>,
    /// The built-in entries the file does not list again (by name).
    pub dropped: Vec<String>,
}

impl fmt::Display for ReplacedDefaults {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let noun = self.key.rsplit('.').next().unwrap_or(&self.key);
        let dropped: Vec<String> = self.dropped.iter().map(|n| format!("{n:?}")).collect();
        write!(
            f,
            "{} in {} replaces the {} built-in {noun} and drops {}; copy the ones you want to \
             keep from `sparklio-desk config default`",
            self.key,
            self.file.display(),
            self.builtin.len(),
            dropped.join(", "),
        )
    }
}

/// The built-in lists of named tables (`defaults`) that `file` replaces and drops
/// entries of.
pub(super) fn replaced_defaults(
    defaults: &Value,
    file: &Value,
    path: &Path,
) -> Vec<ReplacedDefaults> {
    let mut out = Vec::new();
    walk(defaults, file, "", path, &mut out);
    out
}

fn walk(
    defaults: &Value,
    file: &Value,
    prefix: &str,
    path: &Path,
    out: &mut Vec<ReplacedDefaults>,
) {
    match (defaults, file) {
        (Value::Object(d), Value::Object(f)) => {
            for (k, fv) in f {
                if let Some(dv) = d.get(k) {
                    let key = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(dv, fv, &key, path, out);
                }
            }
        }
        (Value::Array(d), Value::Array(f)) => {
            let builtin = names(d);
            // Scalar lists (trusted_networks …) are plain values: replacing is expected.
            if builtin.is_empty() {
                return;
            }
            let kept = names(f);
            let dropped: Vec<String> = builtin
                .iter()
                .filter(|n| !kept.contains(n))
                .cloned()
                .collect();
            if !dropped.is_empty() {
                out.push(ReplacedDefaults {
                    key: prefix.to_string(),
                    file: path.to_path_buf(),
                    builtin,
                    dropped,
                });
            }
        }
        _ => {}
    }
}

fn names(list: &[Value]) -> Vec<String> {
    list.iter()
        .filter_map(|v| v.get("name").and_then(Value::as_str))
        .map(str::to_string)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replaced(file: &str) -> Vec<ReplacedDefaults> {
        let defaults: Value = toml::from_str(super::super::DEFAULT_TOML).unwrap();
        let file: Value = toml::from_str(file).unwrap();
        replaced_defaults(&defaults, &file, Path::new("my.toml"))
    }

    #[test]
    fn a_route_of_ones_own_names_the_built_in_routes_it_drops() {
        let r = replaced("[[llm.routes]]\nname = \"brand to llama\"\nprovider = \"ollama\"\n");
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].key, "llm.routes");
        assert_eq!(
            r[0].dropped,
            ["heavy reasoning", "light tasks", "writers", "analysts"]
        );
        assert_eq!(
            r[0].to_string(),
            "llm.routes in my.toml replaces the 4 built-in routes and drops \"heavy reasoning\", \
             \"light tasks\", \"writers\", \"analysts\"; copy the ones you want to keep from \
             `sparklio-desk config default`"
        );
    }

    #[test]
    fn built_in_routes_copied_into_the_file_are_not_dropped() {
        let mut file = String::new();
        for name in ["heavy reasoning", "light tasks", "writers"] {
            file += &format!("[[llm.routes]]\nname = \"{name}\"\nprovider = \"ollama\"\n");
        }
        let r = replaced(&file);
        assert_eq!(r.len(), 1, "{r:?}");
        assert_eq!(r[0].dropped, ["analysts"]);
        file += "[[llm.routes]]\nname = \"analysts\"\nprovider = \"ollama\"\n";
        assert_eq!(replaced(&file), []);
        // A list of plain values replaces without a word.
        assert_eq!(
            replaced("[server]\ntrusted_networks = [\"10.0.0.0/8\"]\n"),
            []
        );
    }
}
