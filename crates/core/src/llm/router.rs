//! Config-driven routing: which provider and model a request gets, and why.
//!
//! Order of precedence: `options.model` / `override_model` and `options.provider`
//! from the request, then the first matching `[[llm.routes]]` rule (lower priority
//! first, file order among equals), then `[llm.default_route]`. The model comes from
//! the same step as the provider, else from the provider's `default_model`.

use crate::config::{LlmConfig, RouteRule};
use serde::Serialize;
use std::collections::BTreeMap;

/// What the request asks for, already normalised (canonical role, `text` → `chat`).
#[derive(Debug, Clone, Default)]
pub struct RouteQuery<'a> {
    pub role: &'a str,
    pub task: &'a str,
    pub mode: &'a str,
    pub provider: Option<&'a str>,
    pub model: Option<&'a str>,
}

/// The outcome: provider, model, and which rule decided.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RouteDecision {
    pub provider: String,
    pub model: Option<String>,
    /// The rule that matched (its name, or `routes[i]`), `default_route` or `request`.
    pub matched: String,
    /// Where to go when the provider cannot answer (the rule's `fallbacks`; none when
    /// the request forced a provider).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<crate::config::FallbackTarget>,
}

/// The rules in the order they are tried, and the default.
#[derive(Debug, Clone, Serialize)]
pub struct RoutingTable {
    pub routes: Vec<RouteView>,
    pub default_route: RouteTargetView,
}

/// One rule as `router/info` shows it (the model filled in from the provider's default).
#[derive(Debug, Clone, Serialize)]
pub struct RouteView {
    /// Its place in `[[llm.routes]]`.
    pub index: usize,
    pub name: Option<String>,
    pub priority: i64,
    pub roles: Vec<String>,
    pub tasks: Vec<String>,
    pub modes: Vec<String>,
    pub provider: String,
    pub model: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<crate::config::FallbackTarget>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RouteTargetView {
    pub provider: String,
    pub model: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Router {
    /// Rules sorted by priority (stable, so file order breaks ties).
    rules: Vec<Rule>,
    default_provider: String,
    default_model: Option<String>,
    default_fallbacks: Vec<crate::config::FallbackTarget>,
    provider_defaults: BTreeMap<String, Option<String>>,
}

/// A configured rule, with its place in `[[llm.routes]]` and the label answers name it
/// by (`meta.route`), built once.
#[derive(Debug, Clone)]
struct Rule {
    index: usize,
    label: String,
    rule: RouteRule,
}

fn rule_matches(rule: &RouteRule, q: &RouteQuery) -> bool {
    let ok = |list: &[String], value: &str| list.is_empty() || list.iter().any(|x| x == value);
    // `text` is `chat`: a rule written for either matches both.
    let mode_ok = rule.modes.is_empty()
        || rule
            .modes
            .iter()
            .any(|m| normalize_mode(m) == normalize_mode(q.mode));
    ok(&rule.roles, q.role) && ok(&rule.tasks, q.task) && mode_ok
}

fn normalize_mode(m: &str) -> &str {
    if m == "text" {
        "chat"
    } else {
        m
    }
}

impl Router {
    pub fn new(cfg: &LlmConfig) -> Self {
        let mut rules: Vec<Rule> = (cfg.routes.iter().cloned().enumerate())
            .map(|(index, rule)| Rule {
                label: Self::rule_label(index, &rule),
                index,
                rule,
            })
            .collect();
        rules.sort_by_key(|r| r.rule.priority);
        Self {
            rules,
            default_provider: cfg.default_route.provider.clone(),
            default_model: cfg.default_route.model.clone(),
            default_fallbacks: cfg.default_route.fallbacks.clone(),
            provider_defaults: cfg
                .providers
                .iter()
                .map(|(n, p)| (n.clone(), p.default_model.clone()))
                .collect(),
        }
    }

    fn rule_label(index: usize, rule: &RouteRule) -> String {
        match &rule.name {
            Some(n) => format!("{n:?} (llm.routes[{index}])"),
            None => format!("llm.routes[{index}]"),
        }
    }

    fn provider_default(&self, provider: &str) -> Option<String> {
        self.provider_defaults.get(provider).cloned().flatten()
    }

    pub fn route(&self, q: &RouteQuery) -> RouteDecision {
        self.decide(q, None)
    }

    /// The decision and, in words, why (`sparklio-desk route`); the explanation is
    /// built only here, not for every request.
    pub fn explain(&self, q: &RouteQuery) -> (RouteDecision, String) {
        let mut why = String::new();
        let decision = self.decide(q, Some(&mut why));
        (decision, why)
    }

    fn decide(&self, q: &RouteQuery, mut why: Option<&mut String>) -> RouteDecision {
        use std::fmt::Write;
        let rule = self.rules.iter().find(|r| rule_matches(&r.rule, q));
        let (mut provider, mut model, mut matched, mut fallbacks) = match rule {
            Some(Rule { label, rule: r, .. }) => {
                if let Some(w) = why.as_deref_mut() {
                    let _ = write!(
                        w,
                        "rule {label} (priority {}) matches role={} task={} mode={}",
                        r.priority, q.role, q.task, q.mode
                    );
                }
                (
                    r.provider.clone(),
                    r.model.clone(),
                    label.clone(),
                    r.fallbacks.clone(),
                )
            }
            None => {
                if let Some(w) = why.as_deref_mut() {
                    let _ = write!(
                        w,
                        "no rule matches role={} task={} mode={}: llm.default_route",
                        q.role, q.task, q.mode
                    );
                }
                (
                    self.default_provider.clone(),
                    self.default_model.clone(),
                    "default_route".to_string(),
                    self.default_fallbacks.clone(),
                )
            }
        };
        if let Some(p) = q.provider.filter(|p| !p.is_empty()) {
            if p != provider {
                // A forced provider does not inherit a model meant for another provider.
                model = None;
            }
            provider = p.to_string();
            matched = "request".into();
            if let Some(w) = why.as_deref_mut() {
                w.clear();
                let _ = write!(w, "options.provider = {p:?} (request override)");
            }
            // A forced provider is that provider, not a route with fallbacks.
            fallbacks.clear();
        }
        if let Some(m) = q.model.filter(|m| !m.is_empty()) {
            model = Some(m.to_string());
            matched = "request".into();
            if let Some(w) = why.as_deref_mut() {
                let _ = write!(w, "; model {m:?} forced by the request");
            }
        }
        if model.is_none() {
            model = self.provider_default(&provider);
            if let (Some(w), Some(m)) = (why, &model) {
                let _ = write!(w, "; model = llm.providers.{provider}.default_model ({m})");
            }
        }
        let fallbacks = fallbacks
            .into_iter()
            .map(|mut f| {
                if f.model.is_none() {
                    f.model = self.provider_default(&f.provider);
                }
                f
            })
            .collect();
        RouteDecision {
            provider,
            model,
            matched,
            fallbacks,
        }
    }

    /// The routing table, for `router/info`.
    pub fn describe(&self) -> RoutingTable {
        let routes = self
            .rules
            .iter()
            .map(|Rule { index, rule: r, .. }| RouteView {
                index: *index,
                name: r.name.clone(),
                priority: r.priority,
                roles: r.roles.clone(),
                tasks: r.tasks.clone(),
                modes: r.modes.clone(),
                provider: r.provider.clone(),
                model: r
                    .model
                    .clone()
                    .or_else(|| self.provider_default(&r.provider)),
                fallbacks: r.fallbacks.clone(),
            })
            .collect();
        RoutingTable {
            routes,
            default_route: RouteTargetView {
                provider: self.default_provider.clone(),
                model: self
                    .default_model
                    .clone()
                    .or_else(|| self.provider_default(&self.default_provider)),
            },
        }
    }

    /// Every model a route can send to each provider (rules, default route, provider defaults).
    pub fn routed_models(&self) -> Vec<(String, String)> {
        let mut out: Vec<(String, String)> = Vec::new();
        let mut add = |p: &str, m: Option<String>| {
            if let Some(m) = m.or_else(|| self.provider_default(p)) {
                if !out.iter().any(|(op, om)| op == p && *om == m) {
                    out.push((p.to_string(), m));
                }
            }
        };
        for Rule { rule: r, .. } in &self.rules {
            add(&r.provider, r.model.clone());
            for f in &r.fallbacks {
                add(&f.provider, f.model.clone());
            }
        }
        add(&self.default_provider, self.default_model.clone());
        for f in &self.default_fallbacks {
            add(&f.provider, f.model.clone());
        }
        out
    }

    pub fn default_provider(&self) -> &str {
        &self.default_provider
    }

    /// The routes (rules, fallbacks, the default route) that send requests to `model`
    /// on `provider`, by name (`"writers"`, `llm.routes[2]`, `default_route`).
    pub fn routes_using(&self, provider: &str, model: &str) -> Vec<String> {
        let hits = |p: &str, m: Option<String>| {
            p == provider
                && m.or_else(|| self.provider_default(p))
                    .is_some_and(|m| crate::llm::same_model(&m, model))
        };
        let mut out = Vec::new();
        for Rule {
            index: i, rule: r, ..
        } in &self.rules
        {
            let name = r
                .name
                .clone()
                .map_or_else(|| format!("llm.routes[{i}]"), |n| format!("{n:?}"));
            if hits(&r.provider, r.model.clone()) {
                out.push(name.clone());
            }
            if r.fallbacks
                .iter()
                .any(|f| hits(&f.provider, f.model.clone()))
            {
                out.push(format!("{name} (fallback)"));
            }
        }
        if hits(&self.default_provider, self.default_model.clone()) {
            out.push("default_route".into());
        }
        if self
            .default_fallbacks
            .iter()
            .any(|f| hits(&f.provider, f.model.clone()))
        {
            out.push("default_route (fallback)".into());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn q<'a>(role: &'a str, task: &'a str, mode: &'a str) -> RouteQuery<'a> {
        RouteQuery {
            role,
            task,
            mode,
            ..Default::default()
        }
    }

    fn default_router() -> Router {
        Router::new(&Config::default().llm)
    }

    #[test]
    fn default_config_ships_the_team_routing() {
        let r = default_router();
        let model = |role, task| r.route(&q(role, task, "json")).model.unwrap();
        assert_eq!(model("strategist", "content_plan"), "qwen2.5:14b");
        assert_eq!(model("copywriter", "product_detail"), "qwen2.5:14b");
        for role in ["brief", "brand", "reviewer", "vision", "editor"] {
            assert_eq!(model(role, "x"), "qwen2.5:7b", "{role}");
        }
        assert_eq!(model("strategist", "heavy_reasoning"), "mistral-small");
        assert_eq!(model("copywriter", "tagging"), "llama3.2");
        assert_eq!(model("brief", "short_summary"), "llama3.2");
        let d = r.route(&q("someone", "something", "json"));
        assert_eq!(d.matched, "default_route");
        assert_eq!(d.model.as_deref(), Some("qwen2.5:7b"));
        assert_eq!(d.provider, "ollama");
    }

    #[test]
    fn the_explanation_matches_the_decision_it_explains() {
        let r = default_router();
        let unmatched = q("someone", "something", "json");
        let forced_provider = RouteQuery {
            provider: Some("mock"),
            ..q("copywriter", "sns", "json")
        };
        let forced_model = RouteQuery {
            model: Some("forced:1b"),
            ..q("copywriter", "sns", "json")
        };
        let matched = q("strategist", "heavy_reasoning", "json");
        for query in [&matched, &unmatched, &forced_provider, &forced_model] {
            let (decision, why) = r.explain(query);
            assert_eq!(decision, r.route(query), "{why}");
            assert!(!why.is_empty());
        }
        let (_, why) = r.explain(&unmatched);
        assert!(
            why.starts_with("no rule matches role=someone task=something mode=json")
                && why.ends_with("default_model (qwen2.5:7b)"),
            "{why}"
        );
        let (_, why) = r.explain(&forced_provider);
        assert!(
            why.starts_with("options.provider = \"mock\" (request override)"),
            "{why}"
        );
        let (_, why) = r.explain(&forced_model);
        assert!(
            why.ends_with("; model \"forced:1b\" forced by the request"),
            "{why}"
        );
    }

    #[test]
    fn priority_then_file_order_then_request_overrides() {
        let mut cfg = Config::default().llm;
        cfg.routes = vec![
            RouteRule {
                name: Some("late".into()),
                priority: 50,
                roles: vec!["copywriter".into()],
                tasks: vec![],
                modes: vec![],
                provider: "ollama".into(),
                model: Some("late-model".into()),
                fallbacks: vec![],
            },
            RouteRule {
                name: Some("chat copy".into()),
                priority: 5,
                roles: vec!["copywriter".into()],
                tasks: vec![],
                modes: vec!["text".into()],
                provider: "mock".into(),
                model: None,
                fallbacks: vec![],
            },
            RouteRule {
                name: Some("tie-first".into()),
                priority: 50,
                roles: vec![],
                tasks: vec!["sns".into()],
                modes: vec![],
                provider: "ollama".into(),
                model: Some("first".into()),
                fallbacks: vec![],
            },
        ];
        let r = Router::new(&cfg);
        assert_eq!(
            r.route(&q("copywriter", "sns", "json")).model.as_deref(),
            Some("late-model"),
            "equal priority keeps file order"
        );
        let chat = r.route(&q("copywriter", "sns", "chat"));
        assert_eq!(chat.provider, "mock", "a text rule matches chat");
        assert_eq!(chat.model.as_deref(), Some("mock-model"));
        let forced = r.route(&RouteQuery {
            model: Some("forced:1b"),
            ..q("copywriter", "sns", "json")
        });
        assert_eq!(forced.model.as_deref(), Some("forced:1b"));
        assert_eq!(forced.provider, "ollama");
        assert_eq!(forced.matched, "request");
        let prov = r.route(&RouteQuery {
            provider: Some("mock"),
            ..q("copywriter", "sns", "json")
        });
        assert_eq!(prov.provider, "mock");
        assert_eq!(prov.model.as_deref(), Some("mock-model"));
    }
}
