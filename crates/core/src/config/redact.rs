//! What `config show` and `GET /api/v1/config` may print: every value but a credential.
//! Matched on whole field names, not substrings: `max_tokens` and
//! `cost_per_1k_prompt_tokens` are settings an owner needs to see, not secrets.

use serde_json::Value;

/// The Desk's own fields that hold credentials (the last segment of a key, index removed).
const SECRET_FIELDS: &[&str] = &["api_keys", "admin_keys", "key"];

/// Parts of a supervised service's environment variable name that mark a credential
/// (`HF_TOKEN`, `OPENAI_API_KEY`, `DB_PASSWORD`). Those names are chosen by others, so
/// they are matched loosely: hiding one setting too many is cheaper than one key shown.
const SECRET_WORDS: &[&str] = &["KEY", "TOKEN", "SECRET", "PASS", "CREDENTIAL", "AUTH"];

/// Whether the value at `key` (e.g. `server.keys[0].key`) is a credential that must never
/// be printed or logged.
pub fn is_secret_key(key: &str) -> bool {
    let segments: Vec<&str> = key
        .split('.')
        .map(|s| s.split('[').next().unwrap_or(s))
        .collect();
    match segments.as_slice() {
        ["services", "env", name] => {
            let name = name.to_ascii_uppercase();
            SECRET_WORDS.iter().any(|w| name.contains(w))
        }
        [.., last] => SECRET_FIELDS.contains(last),
        [] => false,
    }
}

/// The value to show for `key`: a credential replaced, a URL's password hidden.
pub fn shown(key: &str, value: &Value) -> Value {
    if is_secret_key(key) {
        return Value::String(match value {
            Value::Array(a) => format!("[<{} redacted>]", a.len()),
            _ => "<redacted>".into(),
        });
    }
    match value {
        Value::String(s) => Value::String(without_password(s)),
        other => other.clone(),
    }
}

/// `s` with the password of a URL (`http://user:pw@host`) replaced; anything else as it is.
fn without_password(s: &str) -> String {
    match reqwest::Url::parse(s) {
        Ok(mut url) if url.password().is_some() => {
            let _ = url.set_password(Some("redacted"));
            url.to_string()
        }
        _ => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_are_secret_and_token_counts_are_not() {
        for (key, secret) in [
            ("server.api_keys", true),
            ("server.admin_keys", true),
            ("server.keys[0].key", true),
            ("server.keys[0].name", false),
            ("services[0].env.HF_TOKEN", true),
            ("services[1].env.OPENAI_API_KEY", true),
            ("services[1].env.db_password", true),
            ("services[1].env.AWS_SECRET_ACCESS_KEY", true),
            ("services[0].env.CUDA_VISIBLE_DEVICES", false),
            ("services[0].env.OLLAMA_KEEP_ALIVE", false),
            ("llm.sampling.max_tokens", false),
            ("llm.sampling.tasks.tagging.max_tokens", false),
            ("llm.providers.ollama.cost_per_1k_prompt_tokens", false),
            ("llm.providers.ollama.cost_per_1k_completion_tokens", false),
            ("llm.providers.ollama.keep_alive", false),
            ("llm.providers.ollama.base_url", false),
            ("services[0].health.url", false),
        ] {
            assert_eq!(is_secret_key(key), secret, "{key}");
        }
    }

    #[test]
    fn a_password_in_a_url_is_hidden_and_the_rest_shown() {
        assert_eq!(
            shown(
                "llm.providers.ollama.base_url",
                &"http://u:pw@gpu:11434".into()
            ),
            "http://u:redacted@gpu:11434/"
        );
        assert_eq!(
            shown("llm.providers.ollama.base_url", &"http://gpu:11434".into()),
            "http://gpu:11434"
        );
        assert_eq!(
            shown("server.api_keys", &serde_json::json!(["a", "b"])),
            "[<2 redacted>]"
        );
        assert_eq!(shown("llm.sampling.max_tokens", &2000.into()), 2000);
    }
}
