//! Answer shapes as the agents describe them: nested objects of named fields, each leaf
//! a kind (text, list, score, length). One tree gives the JSON Schema an answer is
//! validated against, the normalisation applied before that, and the mock's answer.
//!
//! Two sources: our hints for the agents' built-in structures (`agents.json`, the
//! field names theirs verbatim), and a request's own `_output_structure`, whose leaves
//! are Korean prose descriptions ("해시태그 5-10개", "전체 점수 (1-10)"). A described
//! leaf accepts any JSON value; its kind is read from the description only where the
//! words make it unambiguous, and only decides normalisation and the mock's answer.

use serde_json::{json, Map, Value};

/// What a leaf holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Leaf {
    Text,
    /// A list of texts; a single text is taken as a list of one.
    List,
    /// A score out of 10; `"8/10"` and `"8"` are taken as 8.
    Score,
    /// A length: a number or a text ("120자").
    Length,
    /// Nothing known beyond "present".
    Any,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Shape {
    Object(Vec<(String, Shape)>),
    Leaf {
        kind: Leaf,
        /// The request's description of the field, when it gave one.
        about: Option<String>,
        /// Checked against its kind (built-in hints) or only required (a request's prose).
        checked: bool,
    },
}

/// JSON read in its written order (serde_json's maps sort their keys, and a prompt
/// should list fields the way the agent wrote them): texts and objects only.
#[derive(Debug, Clone, PartialEq)]
pub enum Ordered {
    Text(String),
    Fields(Vec<(String, Ordered)>),
}

impl Ordered {
    pub fn get(&self, key: &str) -> Option<&Ordered> {
        match self {
            Ordered::Fields(f) => f.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            Ordered::Text(_) => None,
        }
    }

    pub fn fields(&self) -> &[(String, Ordered)] {
        match self {
            Ordered::Fields(f) => f,
            Ordered::Text(_) => &[],
        }
    }
}

impl<'de> serde::Deserialize<'de> for Ordered {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = Ordered;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a text or an object")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Ordered, E> {
                Ok(Ordered::Text(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<Ordered, A::Error> {
                let mut fields = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Ordered>()? {
                    fields.push((k, v));
                }
                Ok(Ordered::Fields(fields))
            }
        }
        d.deserialize_any(Visit)
    }
}

impl Shape {
    /// From our hints: `"text"`, `"list of text (…)"`, `"score (…)"`, `"length (…)"`.
    pub fn from_hints(v: &Ordered) -> Option<Shape> {
        match v {
            Ordered::Fields(fields) if !fields.is_empty() => fields
                .iter()
                .map(|(k, v)| Some((k.clone(), Shape::from_hints(v)?)))
                .collect::<Option<Vec<_>>>()
                .map(Shape::Object),
            Ordered::Fields(_) => None,
            Ordered::Text(hint) => {
                let kind = if hint.starts_with("list") {
                    Leaf::List
                } else if hint.starts_with("score") {
                    Leaf::Score
                } else if hint.starts_with("length") {
                    Leaf::Length
                } else if hint.starts_with("text") {
                    Leaf::Text
                } else {
                    return None;
                };
                Some(Shape::Leaf {
                    kind,
                    about: None,
                    checked: true,
                })
            }
        }
    }

    /// From a request's `_output_structure`: objects nest, every other value describes a
    /// leaf. `None` when it is not an object with at least one field.
    pub fn from_descriptions(v: &Value) -> Option<Shape> {
        let Value::Object(fields) = v else {
            return None;
        };
        if fields.is_empty() {
            return None;
        }
        let mut out = Vec::with_capacity(fields.len());
        for (k, v) in fields {
            let shape = match v {
                Value::Object(inner) if !inner.is_empty() => Shape::from_descriptions(v)?,
                other => {
                    let about = match other {
                        Value::String(s) => s.clone(),
                        Value::Null => String::new(),
                        x => x.to_string(),
                    };
                    Shape::Leaf {
                        kind: kind_from_description(k, &about),
                        about: Some(about),
                        checked: false,
                    }
                }
            };
            out.push((k.clone(), shape));
        }
        Some(Shape::Object(out))
    }

    /// The JSON Schema: every field required, recursively; extra fields allowed.
    pub fn schema(&self) -> Value {
        match self {
            Shape::Object(fields) => {
                let required: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
                let properties: Map<String, Value> = fields
                    .iter()
                    .map(|(k, s)| (k.clone(), s.schema()))
                    .collect();
                json!({"type": "object", "required": required, "properties": properties})
            }
            Shape::Leaf { checked: false, .. }
            | Shape::Leaf {
                kind: Leaf::Any, ..
            } => {
                json!({"not": {"type": "null"}})
            }
            Shape::Leaf {
                kind: Leaf::Text, ..
            } => {
                // A model may answer a list or a number where text is described: accepted.
                json!({"not": {"type": "null"}, "minLength": 1})
            }
            Shape::Leaf {
                kind: Leaf::List, ..
            } => json!({"type": ["array", "string"], "minLength": 1}),
            Shape::Leaf {
                kind: Leaf::Score, ..
            } => json!({"type": "number", "minimum": 0, "maximum": 10}),
            Shape::Leaf {
                kind: Leaf::Length, ..
            } => json!({"type": ["number", "string"]}),
        }
    }

    /// Make the unambiguous fixes in place: a single text where a list is described
    /// becomes a list of one, a score written `"8/10"` or `"8"` becomes 8. Returns what
    /// changed, as JSON pointers.
    pub fn normalise(&self, value: &mut Value) -> Vec<String> {
        let mut changed = Vec::new();
        self.normalise_at(value, &mut String::new(), &mut changed);
        changed
    }

    /// `path` is the value's pointer, one buffer for the whole walk: a pointer is copied
    /// out only for a field that changed.
    fn normalise_at(&self, value: &mut Value, path: &mut String, changed: &mut Vec<String>) {
        match (self, value) {
            (Shape::Object(fields), Value::Object(map)) => {
                for (k, shape) in fields {
                    if let Some(v) = map.get_mut(k) {
                        let at = path.len();
                        path.push('/');
                        path.push_str(k);
                        shape.normalise_at(v, path, changed);
                        path.truncate(at);
                    }
                }
            }
            (
                Shape::Leaf {
                    kind: Leaf::List, ..
                },
                v @ Value::String(_),
            ) => {
                let text = v.take();
                *v = Value::Array(vec![text]);
                changed.push(path.clone());
            }
            (
                Shape::Leaf {
                    kind: Leaf::Score, ..
                },
                v @ Value::String(_),
            ) => {
                if let Some(score) = v.as_str().and_then(score_of) {
                    *v = json!(score);
                    changed.push(path.clone());
                }
            }
            _ => {}
        }
    }

    /// The compact shape prompts show: `{"post": text, "hashtags": [text], …}`.
    pub fn hint(&self) -> String {
        match self {
            Shape::Object(fields) => {
                let inner: Vec<String> = fields
                    .iter()
                    .map(|(k, s)| format!("\"{k}\": {}", s.hint()))
                    .collect();
                format!("{{{}}}", inner.join(", "))
            }
            Shape::Leaf {
                about: Some(about), ..
            } if !about.is_empty() => serde_json::to_string(about).unwrap_or_default(),
            Shape::Leaf { kind, .. } => match kind {
                Leaf::Text | Leaf::Any => "string".into(),
                Leaf::List => "[string]".into(),
                Leaf::Score => "number (1-10)".into(),
                Leaf::Length => "number".into(),
            },
        }
    }
}

/// `"8/10"`, `"8"`, `" 7.5 / 10 "` → the number; anything else → None.
fn score_of(text: &str) -> Option<f64> {
    let t = text.trim();
    let number = match t.split_once('/') {
        Some((n, d)) if d.trim() == "10" => n.trim(),
        Some(_) => return None,
        None => t,
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|n| (0.0..=10.0).contains(n))
}

/// A described leaf's kind, only where the words leave no doubt: a list ("목록",
/// "리스트", "list", or a count such as "3개" / "5-10개" — but not "3개월", months),
/// a score ("점수", "score", "(1-10)"). Everything else is any value.
pub fn kind_from_description(field: &str, about: &str) -> Leaf {
    let a = about.to_lowercase();
    if a.contains("점수") || a.contains("score") || a.contains("1-10") || field.ends_with("_score")
    {
        return Leaf::Score;
    }
    if a.contains("목록") || a.contains("리스트") || a.contains("list") || has_count(&a) {
        return Leaf::List;
    }
    Leaf::Any
}

/// "3개", "5-10개", "3~5개": a count of items (not "3개월").
fn has_count(text: &str) -> bool {
    let chars: Vec<char> = text.chars().collect();
    chars.iter().enumerate().any(|(i, c)| {
        *c == '개' && i > 0 && chars[i - 1].is_ascii_digit() && chars.get(i + 1) != Some(&'월')
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptions_give_kinds_only_when_unambiguous() {
        let cases = [
            ("hashtags", "해시태그 5-10개", Leaf::List),
            ("features", "주요 특징 3개 (각 30자 이내)", Leaf::List),
            ("strengths", "강점 리스트", Leaf::List),
            ("corrections", "수정 목록 (원문 -> 수정)", Leaf::List),
            ("values", "핵심 가치 3-5개", Leaf::List),
            ("short_term", "단기 전략 (3개월)", Leaf::Any),
            ("overall_score", "전체 점수 (1-10)", Leaf::Score),
            ("target_fit_score", "타겟 적합성 (1-10)", Leaf::Score),
            ("readability_score", "가독성 점수", Leaf::Score),
            ("body", "본문 설명 (100-200자)", Leaf::Any),
            ("headline", "임팩트 있는 헤드라인 (10자 이내)", Leaf::Any),
        ];
        for (field, about, kind) in cases {
            assert_eq!(
                kind_from_description(field, about),
                kind,
                "{field}: {about}"
            );
        }
    }

    #[test]
    fn a_request_structure_requires_its_keys_and_takes_any_value() {
        let s = Shape::from_descriptions(&json!({
            "post": "메인 포스팅 내용 (80-120자)",
            "hashtags": "해시태그 5-10개",
            "cta": "행동 유도 문구",
            "nested": {"a": "x", "b": {"c": "y"}}
        }))
        .unwrap();
        let schema = s.schema();
        let v = jsonschema::validator_for(&schema).unwrap();
        assert!(v.is_valid(&json!({"post": ["a", "b"], "hashtags": "#a", "cta": 3, "nested": {"a": 1, "b": {"c": true}}})));
        assert!(!v.is_valid(
            &json!({"post": "p", "hashtags": [], "cta": "c", "nested": {"a": 1, "b": {}}})
        ));
        assert!(
            !v.is_valid(&json!({"post": "p", "hashtags": [], "nested": {"a": 1, "b": {"c": 1}}}))
        );
        assert!(!v.is_valid(
            &json!({"post": null, "hashtags": [], "cta": "c", "nested": {"a": 1, "b": {"c": 1}}})
        ));
    }

    #[test]
    fn normalising_lists_and_scores() {
        let hints: Ordered = serde_json::from_str(
            r#"{"overall_score": "score (number 1-10)", "strengths": "list of text", "detailed_feedback": "text"}"#,
        )
        .unwrap();
        let s = Shape::from_hints(&hints).unwrap();
        let mut answer = json!({"overall_score": "8/10", "strengths": "명확한 메시지", "detailed_feedback": "좋습니다"});
        let changed = s.normalise(&mut answer);
        assert_eq!(
            answer,
            json!({"overall_score": 8.0, "strengths": ["명확한 메시지"], "detailed_feedback": "좋습니다"})
        );
        assert_eq!(changed, ["/overall_score", "/strengths"]);
        let v = jsonschema::validator_for(&s.schema()).unwrap();
        assert!(v.is_valid(&answer));
        assert!(!v.is_valid(
            &json!({"overall_score": "great", "strengths": [], "detailed_feedback": "x"})
        ));
        assert!(!v.is_valid(&json!({"overall_score": 8, "strengths": [], "detailed_feedback": ""})));
        // Not a score out of 10: left alone (and then refused by the schema).
        let mut other = json!({"overall_score": "8/100"});
        assert!(s.normalise(&mut other).is_empty());
        // Nested fields are named by their whole pointer, siblings by their own.
        let hints: Ordered = serde_json::from_str(
            r#"{"scores": {"clarity": "score (number 1-10)", "tags": "list of text"}, "note": "list of text"}"#,
        )
        .unwrap();
        let s = Shape::from_hints(&hints).unwrap();
        let mut answer = json!({"scores": {"clarity": "7", "tags": "a"}, "note": "n"});
        assert_eq!(
            s.normalise(&mut answer),
            ["/scores/clarity", "/scores/tags", "/note"]
        );
    }
}
