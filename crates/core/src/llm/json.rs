//! JSON-mode answers: parse, and on failure make exactly one repair attempt for the
//! usual model slips (code fences, prose around the object, trailing commas, a cut-off
//! end). Anything still unparsable is the caller's `LLM_INVALID_JSON`.

use serde_json::Value;

#[derive(Debug, Clone, PartialEq)]
pub struct ParsedJson {
    pub value: Value,
    /// The repair pass was needed.
    pub repaired: bool,
}

/// Parse `text` as JSON, repairing it once if needed. `Err` carries the parser message.
pub fn parse_answer(text: &str) -> Result<ParsedJson, String> {
    match serde_json::from_str::<Value>(text.trim()) {
        Ok(value) => Ok(ParsedJson {
            value,
            repaired: false,
        }),
        Err(first) => {
            let fixed = repair(text);
            serde_json::from_str::<Value>(&fixed)
                .map(|value| ParsedJson {
                    value,
                    repaired: true,
                })
                .map_err(|_| first.to_string())
        }
    }
}

/// The single repair pass.
fn repair(text: &str) -> String {
    let body = strip_fences(text.trim());
    let body = outermost_json(body);
    close_brackets(&remove_trailing_commas(body))
}

fn strip_fences(s: &str) -> &str {
    let Some(start) = s.find("```") else {
        return s;
    };
    let after = &s[start + 3..];
    let after = after.split_once('\n').map_or(after, |(_, rest)| rest);
    match after.rfind("```") {
        Some(end) => &after[..end],
        None => after,
    }
}

/// From the first `{` or `[` to the last matching closer (or the end, if cut off).
fn outermost_json(s: &str) -> &str {
    let Some(start) = s.find(['{', '[']) else {
        return s;
    };
    let closer = if s[start..].starts_with('{') {
        '}'
    } else {
        ']'
    };
    match s.rfind(closer) {
        Some(end) if end > start => &s[start..=end],
        _ => &s[start..],
    }
}

/// Drop commas directly before `}` or `]` (outside strings).
fn remove_trailing_commas(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut in_string = false;
    let mut escaped = false;
    for (i, &c) in chars.iter().enumerate() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        if c == '"' {
            in_string = true;
        }
        if c == ',' {
            let next = chars[i + 1..].iter().find(|n| !n.is_whitespace());
            if matches!(next, Some('}' | ']')) {
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// Close an answer cut off by `num_predict`: end an open string, close open brackets.
fn close_brackets(s: &str) -> String {
    let mut stack = Vec::new();
    let mut in_string = false;
    let mut escaped = false;
    for c in s.chars() {
        if in_string {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => stack.push('}'),
            '[' => stack.push(']'),
            '}' | ']' => {
                stack.pop();
            }
            _ => {}
        }
    }
    let mut out = s.trim_end().to_string();
    if in_string {
        out.push('"');
    }
    while let Some(c) = stack.pop() {
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn valid_json_needs_no_repair() {
        let p = parse_answer(r#" {"a": 1} "#).unwrap();
        assert_eq!(p.value, json!({"a": 1}));
        assert!(!p.repaired);
    }

    #[test]
    fn repairs_common_slips() {
        for (raw, want) in [
            ("```json\n{\"a\": [1, 2,],}\n```", json!({"a": [1, 2]})),
            (
                "Here you go: {\"a\": \"x, }\"} Thanks!",
                json!({"a": "x, }"}),
            ),
            ("{\"a\": {\"b\": \"cut", json!({"a": {"b": "cut"}})),
        ] {
            let p = parse_answer(raw).unwrap_or_else(|e| panic!("{raw}: {e}"));
            assert!(p.repaired);
            assert_eq!(p.value, want, "{raw}");
        }
    }

    #[test]
    fn hopeless_text_fails_with_the_parser_message() {
        let err = parse_answer("I cannot answer in JSON, sorry.").unwrap_err();
        assert!(err.contains("expected"), "{err}");
    }
}
