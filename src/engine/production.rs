//! Which servers are production (docs/policy.md, "Production servers").

use regex_automata::meta::Regex;
use regex_automata::util::syntax;

/// A server name pattern that does not compile.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("pattern {pattern:?} is not a valid regular expression: {reason}")]
pub struct BadPattern {
    /// `include` or `exclude`, and the index in that list.
    pub list: &'static str,
    pub index: usize,
    pub pattern: String,
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct ProductionSelector {
    include: Vec<Pattern>,
    exclude: Vec<Pattern>,
    /// Tag names that mark a server as production, ASCII-lowercased.
    tags: Vec<String>,
    all_servers: bool,
}

/// A pattern as written, and compiled.
#[derive(Debug, Clone)]
struct Pattern {
    source: String,
    regex: Regex,
}

/// Two selectors are the same when they were written the same.
impl PartialEq for ProductionSelector {
    fn eq(&self, other: &Self) -> bool {
        self.include().eq(other.include())
            && self.exclude().eq(other.exclude())
            && self.tags == other.tags
            && self.all_servers == other.all_servers
    }
}

impl ProductionSelector {
    pub const DEFAULT_INCLUDE: &'static str = r"(^|[-_.])prod(uction)?([-_.]|$)";
    pub const DEFAULT_EXCLUDE: &'static str = r"(^|[-_.])(non|pre)[-_.]?prod(uction)?([-_.]|$)";
    pub const DEFAULT_TAGS: [&'static str; 2] = ["production", "prod"];

    pub fn new(
        include: &[String],
        exclude: &[String],
        tags: &[String],
        all_servers: bool,
    ) -> Result<Self, BadPattern> {
        let compile_all = |list: &'static str, patterns: &[String]| {
            patterns
                .iter()
                .enumerate()
                .map(|(index, p)| {
                    compile(p).map_err(|reason| BadPattern {
                        list,
                        index,
                        pattern: p.clone(),
                        reason,
                    })
                })
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(ProductionSelector {
            include: compile_all("include", include)?,
            exclude: compile_all("exclude", exclude)?,
            tags: tags.iter().map(|t| t.to_ascii_lowercase()).collect(),
            all_servers,
        })
    }

    pub fn all_servers(&self) -> bool {
        self.all_servers
    }

    /// The include patterns, as written.
    pub fn include(&self) -> impl Iterator<Item = &str> {
        self.include.iter().map(|p| p.source.as_str())
    }

    /// The exclude patterns, as written.
    pub fn exclude(&self) -> impl Iterator<Item = &str> {
        self.exclude.iter().map(|p| p.source.as_str())
    }

    /// The production tags, ASCII-lowercased.
    pub fn tags(&self) -> &[String] {
        &self.tags
    }

    /// Whether a server key names a production server.
    pub fn name_matches(&self, key: &str) -> bool {
        let key = key.as_bytes();
        self.include.iter().any(|p| p.regex.is_match(key))
            && !self.exclude.iter().any(|p| p.regex.is_match(key))
    }

    /// Prefixes under which a configured tag also counts: the AsyncAPI specification's
    /// examples (2.5.0 onwards, 3.x) tag servers `env:production`, `env:staging`, ...
    pub const TAG_PREFIXES: [&'static str; 2] = ["env:", "environment:"];

    /// Whether a tag name marks a production server: a configured tag, alone or after one
    /// of [`Self::TAG_PREFIXES`], exact and ASCII case-insensitive (`env:productions` and
    /// `Production line` are not).
    pub fn tag_matches(&self, tag: &str) -> bool {
        let bare = Self::TAG_PREFIXES
            .iter()
            .find_map(|prefix| strip_prefix_ascii_case(tag, prefix))
            .unwrap_or(tag);
        self.tags.iter().any(|t| t.eq_ignore_ascii_case(bare))
    }
}

impl Default for ProductionSelector {
    fn default() -> Self {
        ProductionSelector {
            include: vec![builtin(Self::DEFAULT_INCLUDE)],
            exclude: vec![builtin(Self::DEFAULT_EXCLUDE)],
            tags: Self::DEFAULT_TAGS.iter().map(|t| (*t).to_owned()).collect(),
            all_servers: false,
        }
    }
}

fn strip_prefix_ascii_case<'t>(text: &'t str, prefix: &str) -> Option<&'t str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// Patterns match with ASCII case folding only, as docs/policy.md says (`unicode(false)`:
/// the Kelvin sign is not a `k`).
///
/// Configured for what a server name is, a few bytes matched once: no full DFA or literal
/// prefilter (they pay off on long haystacks and cost start-up), and a fixed number of
/// cache shards (the default asks for the CPU count, which reads cgroup files at start).
fn compile(pattern: &str) -> Result<Pattern, String> {
    let regex = Regex::builder()
        .syntax(
            syntax::Config::new()
                .case_insensitive(true)
                .unicode(false)
                .utf8(false),
        )
        .configure(
            Regex::config()
                .dfa(false)
                .auto_prefilter(false)
                .pool_capacity(8),
        )
        .build(pattern)
        .map_err(|e| match e.syntax_error() {
            Some(syntax) => syntax.to_string(),
            None => e.to_string(),
        })?;
    Ok(Pattern {
        source: pattern.to_owned(),
        regex,
    })
}

// The built-in patterns are constants, compiled by a unit test: no input reaches this.
#[allow(clippy::expect_used)]
fn builtin(pattern: &str) -> Pattern {
    compile(pattern).expect("built-in production patterns compile")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_names_from_the_policy() {
        let s = ProductionSelector::default();
        for name in [
            "production",
            "prod",
            "prod-eu",
            "kafka.production",
            "eu-PROD-1",
            "PRODUCTION",
            "x_prod",
        ] {
            assert!(s.name_matches(name), "{name} should be production");
        }
        for name in [
            "products",
            "reproduction",
            "nonprod",
            "non-prod",
            "pre-prod",
            "PRE_PRODUCTION",
            "staging",
            "preprod",
            "non.production",
        ] {
            assert!(!s.name_matches(name), "{name} should not be production");
        }
    }

    #[test]
    fn builtin_patterns_compile() {
        assert!(compile(ProductionSelector::DEFAULT_INCLUDE).is_ok());
        assert!(compile(ProductionSelector::DEFAULT_EXCLUDE).is_ok());
    }

    #[test]
    fn ascii_case_folding_only() {
        let s = ProductionSelector::default();
        // U+212A KELVIN SIGN folds to `k` under Unicode rules; not under ASCII ones.
        let tags =
            ProductionSelector::new(&["^kafka$".into()], &[], &["prod".into()], false).unwrap();
        assert!(tags.name_matches("KAFKA"));
        assert!(!tags.name_matches("\u{212A}afka"));
        assert!(s.tag_matches("PROD"));
        assert!(s.tag_matches("Production"));
        assert!(!s.tag_matches("production-eu"));
    }

    #[test]
    fn env_prefixed_tags_of_the_specification_examples() {
        let s = ProductionSelector::default();
        for tag in [
            "env:production",
            "env:prod",
            "ENV:Production",
            "environment:production",
            "Environment:PROD",
        ] {
            assert!(s.tag_matches(tag), "{tag} should mark production");
        }
        for tag in [
            "env:productions",
            "env:staging",
            "env: production",
            "env:",
            "environment:",
            "Production line",
            "envproduction",
            "env:env:production",
            "stage:production",
        ] {
            assert!(!s.tag_matches(tag), "{tag} should not mark production");
        }
        // A configured tag list gets the same prefixes.
        let live = ProductionSelector::new(&[], &[], &["live".into()], false).unwrap();
        assert!(live.tag_matches("env:live"));
        assert!(live.tag_matches("environment:LIVE"));
        assert!(!live.tag_matches("env:production"));
    }

    #[test]
    fn bad_patterns_are_reported() {
        let err = ProductionSelector::new(&["ok".into()], &["x".into(), "(".into()], &[], false)
            .unwrap_err();
        assert_eq!(
            (err.list, err.index, err.pattern.as_str()),
            ("exclude", 1, "(")
        );
    }
}
