//! The configuration file (YAML): the policy (modes, production selector, limits) and what
//! the Kubernetes side looks at. Read with the engine's own YAML loader, so errors point at
//! a line; every field is checked before anything uses it.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::engine::document::pointer::{self, Located};
use crate::engine::document::value::to_json;
use crate::engine::document::{self, Limits, LoadError};
use crate::engine::document::{NodeRef, Pos};
use crate::engine::finding::{Mode, RuleId};
use crate::engine::policy::Policy;
use crate::engine::production::ProductionSelector;
use crate::kubernetes::exceptions::ExceptionPolicy;
use crate::kubernetes::extract::{CR_GROUP, CR_KIND, ExtractConfig};

/// A validated configuration.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Config {
    pub policy: Policy,
    pub kubernetes: ExtractConfig,
    pub exceptions: ExceptionPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read configuration {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{source_name}:{line}:{column}: {message}")]
    Syntax {
        source_name: String,
        line: u32,
        column: u32,
        message: String,
    },
    /// No document, or only comments: at start-up the defaults apply (with a log line);
    /// on a reload it is refused, since a truncated file must not silently drop the policy.
    #[error("{source_name}: the configuration is empty (no document, or only comments)")]
    Empty { source_name: String },
    #[error("{source_name}{}: {}{reason}", at(*.pos), field_prefix(field))]
    Invalid {
        source_name: String,
        /// The field, as `production.include[1]`.
        field: String,
        reason: String,
        pos: Pos,
    },
}

fn field_prefix(field: &str) -> String {
    if field.is_empty() {
        String::new()
    } else {
        format!("{field}: ")
    }
}

fn at(pos: Pos) -> String {
    if pos.is_known() {
        format!(":{}:{}", pos.line, pos.column)
    } else {
        String::new()
    }
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct File {
    #[serde(default)]
    mode: Mode,
    #[serde(default)]
    rules: BTreeMap<String, Mode>,
    #[serde(default)]
    production: ProductionFile,
    #[serde(default)]
    limits: LimitsFile,
    #[serde(default)]
    kubernetes: ExtractConfig,
    #[serde(default)]
    exceptions: ExceptionsFile,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ExceptionsFile {
    namespaces: Option<Vec<String>>,
    max_duration: Option<String>,
    warn_before: Option<String>,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProductionFile {
    include: Option<Vec<String>>,
    exclude: Option<Vec<String>>,
    tags: Option<Vec<String>>,
    #[serde(default)]
    all_servers: bool,
}

#[derive(Debug, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LimitsFile {
    max_document_bytes: Option<usize>,
    max_depth: Option<usize>,
    alias_expansion_factor: Option<u64>,
    alias_expansion_floor: Option<u64>,
}

/// The deepest nesting a configuration may allow: conversions recurse this deep.
const MAX_DEPTH_CEILING: usize = Limits::MAX_DEPTH_CEILING;

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Config::parse(&bytes, &path.display().to_string())
    }

    /// For start-up: an empty file means the defaults, said in the log.
    pub fn load_or_defaults(path: &Path) -> Result<Config, ConfigError> {
        match Config::load(path) {
            Err(ConfigError::Empty { source_name }) => {
                tracing::warn!(config = %source_name, "the configuration file is empty: the defaults apply");
                Ok(Config::default())
            }
            other => other,
        }
    }

    /// The configuration as a file that loads to it, every field written out. YAML 1.2 in
    /// its JSON form, which any YAML reader takes.
    pub fn to_yaml(&self) -> String {
        let policy = &self.policy;
        let production = &policy.production;
        let file = File {
            mode: policy.mode,
            rules: policy
                .rule_modes
                .iter()
                .map(|(rule, mode)| (rule.as_str().to_owned(), *mode))
                .collect(),
            production: ProductionFile {
                include: Some(production.include().map(str::to_owned).collect()),
                exclude: Some(production.exclude().map(str::to_owned).collect()),
                tags: Some(production.tags().to_vec()),
                all_servers: production.all_servers(),
            },
            limits: LimitsFile {
                max_document_bytes: Some(policy.limits.max_bytes),
                max_depth: Some(policy.limits.max_depth),
                alias_expansion_factor: Some(policy.limits.alias_factor),
                alias_expansion_floor: Some(policy.limits.alias_floor),
            },
            kubernetes: self.kubernetes.clone(),
            exceptions: ExceptionsFile {
                namespaces: Some(self.exceptions.namespaces.clone()),
                max_duration: Some(
                    humantime::format_duration(self.exceptions.max_duration).to_string(),
                ),
                warn_before: Some(
                    humantime::format_duration(self.exceptions.warn_before).to_string(),
                ),
            },
        };
        // Plain data with string keys: serialising it cannot fail.
        serde_json::to_string_pretty(&file).unwrap_or_default() + "\n"
    }

    pub fn parse(bytes: &[u8], source_name: &str) -> Result<Config, ConfigError> {
        let syntax = |error: LoadError| ConfigError::Syntax {
            source_name: source_name.to_owned(),
            line: error.pos().line,
            column: error.pos().column,
            message: error.to_string(),
        };
        let empty = || ConfigError::Empty {
            source_name: source_name.to_owned(),
        };
        let limits = Limits::default();
        let text = document::check_bytes(bytes, &limits).map_err(syntax)?;
        let stream = match document::load(text, &limits) {
            Ok(stream) => stream,
            Err(LoadError::Empty) => return Err(empty()),
            Err(error) => return Err(syntax(error)),
        };
        let root = match stream.documents.as_slice() {
            [(root, _)] => stream.tree.node(*root),
            [_, (_, second), ..] => {
                let second = stream.tree.pos(*second);
                return Err(ConfigError::Syntax {
                    source_name: source_name.to_owned(),
                    line: second.line,
                    column: second.column,
                    message: "the configuration must be a single YAML document".to_owned(),
                });
            }
            [] => return Err(empty()),
        };
        if root.is_null() {
            return Err(empty());
        }
        Reader { source_name, root }.read()
    }
}

struct Reader<'d> {
    source_name: &'d str,
    root: NodeRef<'d>,
}

impl Reader<'_> {
    fn invalid(&self, field: &str, reason: impl Into<String>) -> ConfigError {
        // `production.include[1]` → `/production/include/1`, to find the line.
        let pos = field
            .split(['.', '['])
            .filter(|t| !t.is_empty())
            .map(|t| t.trim_end_matches(']'))
            .try_fold(Located::root(self.root), |here, token| {
                here.child(token)
                    .or_else(|| pointer::resolve(here.node, &format!("/{token}")))
            })
            .map_or(Pos::UNKNOWN, |l| l.pos());
        ConfigError::Invalid {
            source_name: self.source_name.to_owned(),
            field: field.to_owned(),
            reason: reason.into(),
            pos,
        }
    }

    fn read(&self) -> Result<Config, ConfigError> {
        let json =
            to_json(self.root, MAX_DEPTH_CEILING).map_err(|e| self.invalid("", e.to_string()))?;
        let file: File = serde_path_to_error::deserialize(json).map_err(|e| {
            let field = e.path().to_string();
            let field = if field == "." { String::new() } else { field };
            let reason = e.into_inner().to_string();
            self.invalid(&field, reason)
        })?;

        let mut rule_modes = BTreeMap::new();
        for (name, mode) in &file.rules {
            let rule: RuleId = name.parse().map_err(|_| {
                let known: Vec<&str> = RuleId::ALL.iter().map(|r| r.as_str()).collect();
                self.invalid(
                    &format!("rules.{name}"),
                    format!("unknown rule \"{name}\" (rules are: {})", known.join(", ")),
                )
            })?;
            rule_modes.insert(rule, *mode);
        }

        let defaults = |list: &Option<Vec<String>>, default: &[&str]| {
            list.clone()
                .unwrap_or_else(|| default.iter().map(|s| (*s).to_owned()).collect())
        };
        let production = ProductionSelector::new(
            &defaults(
                &file.production.include,
                &[ProductionSelector::DEFAULT_INCLUDE],
            ),
            &defaults(
                &file.production.exclude,
                &[ProductionSelector::DEFAULT_EXCLUDE],
            ),
            &defaults(&file.production.tags, &ProductionSelector::DEFAULT_TAGS),
            file.production.all_servers,
        )
        .map_err(|e| {
            self.invalid(
                &format!("production.{}[{}]", e.list, e.index),
                e.to_string(),
            )
        })?;

        let default = Limits::default();
        let limits = Limits {
            max_bytes: file.limits.max_document_bytes.unwrap_or(default.max_bytes),
            max_depth: file.limits.max_depth.unwrap_or(default.max_depth),
            alias_factor: file
                .limits
                .alias_expansion_factor
                .unwrap_or(default.alias_factor),
            alias_floor: file
                .limits
                .alias_expansion_floor
                .unwrap_or(default.alias_floor),
        };
        if !(1..=Limits::MAX_BYTES_CEILING).contains(&limits.max_bytes) {
            return Err(self.invalid(
                "limits.maxDocumentBytes",
                format!("must be between 1 and {}", Limits::MAX_BYTES_CEILING),
            ));
        }
        if !(2..=MAX_DEPTH_CEILING).contains(&limits.max_depth) {
            return Err(self.invalid(
                "limits.maxDepth",
                format!("must be between 2 and {MAX_DEPTH_CEILING}"),
            ));
        }
        if limits.alias_factor == 0 {
            return Err(self.invalid("limits.aliasExpansionFactor", "must be at least 1"));
        }

        for (i, kind) in file.kubernetes.kinds.iter().enumerate() {
            let field = |name: &str| format!("kubernetes.kinds[{i}].{name}");
            if kind.kind.is_empty() {
                return Err(self.invalid(&field("kind"), "must not be empty"));
            }
            if (kind.group.is_empty() && kind.kind == "ConfigMap")
                || (kind.group == CR_GROUP && kind.kind == CR_KIND)
            {
                return Err(self.invalid(
                    &field("kind"),
                    format!("{} is always inspected; list only other kinds", kind.kind),
                ));
            }
            if !kind.field.starts_with('/') || pointer::tokens(&kind.field).is_none() {
                return Err(self.invalid(
                    &field("field"),
                    format!(
                        "\"{}\" is not a JSON pointer such as /spec/asyncapi",
                        kind.field
                    ),
                ));
            }
        }

        if file.kubernetes.namespaces.default_mode == Mode::Off {
            return Err(self.invalid(
                "kubernetes.namespaces.defaultMode",
                "must be enforce, warn or audit (label a namespace asyncapi-guard.io/mode=off to leave it out)",
            ));
        }

        let exceptions = self.exceptions(&file.exceptions)?;
        Ok(Config {
            policy: Policy {
                mode: file.mode,
                rule_modes,
                production,
                limits,
            },
            kubernetes: file.kubernetes,
            exceptions,
        })
    }

    fn exceptions(&self, file: &ExceptionsFile) -> Result<ExceptionPolicy, ConfigError> {
        let defaults = ExceptionPolicy::default();
        let duration = |field: &str, text: &Option<String>, default| match text {
            None => Ok(default),
            Some(text) => humantime::parse_duration(text)
                .map_err(|e| {
                    self.invalid(
                        &format!("exceptions.{field}"),
                        format!("\"{text}\" is not a duration such as 90d or 336h: {e}"),
                    )
                })
                .and_then(|d| {
                    if d.is_zero() {
                        Err(self.invalid(&format!("exceptions.{field}"), "must be more than 0"))
                    } else {
                        Ok(d)
                    }
                }),
        };
        let policy = ExceptionPolicy {
            namespaces: file.namespaces.clone().unwrap_or(defaults.namespaces),
            max_duration: duration("maxDuration", &file.max_duration, defaults.max_duration)?,
            warn_before: duration("warnBefore", &file.warn_before, defaults.warn_before)?,
        };
        if let Some(i) = policy.namespaces.iter().position(String::is_empty) {
            return Err(self.invalid(&format!("exceptions.namespaces[{i}]"), "must not be empty"));
        }
        Ok(policy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::parse(text.as_bytes(), "config.yaml")
    }

    #[test]
    fn an_empty_file_is_told_apart_and_an_empty_mapping_gives_defaults() {
        for text in ["", "# nothing\n", "---\n", "~\n"] {
            assert!(
                matches!(parse(text), Err(ConfigError::Empty { .. })),
                "{text:?}"
            );
        }
        let config = parse("{}").unwrap();
        assert_eq!(config.policy.mode, Mode::Enforce);
        assert!(config.policy.production.name_matches("prod-eu"));
    }

    #[test]
    fn at_start_up_an_empty_file_means_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, "# all defaults\n").unwrap();
        assert!(matches!(
            Config::load(&path),
            Err(ConfigError::Empty { .. })
        ));
        let config = Config::load_or_defaults(&path).unwrap();
        assert_eq!(config.policy.mode, Mode::Enforce);
    }

    #[test]
    fn the_example_configuration_loads_and_adds_names_and_tags() {
        let config = parse(include_str!("../config/example.yaml")).unwrap();
        let production = &config.policy.production;
        for name in ["production", "prod-eu", "live", "eth.mainnet"] {
            assert!(production.name_matches(name), "{name}");
        }
        for name in ["public", "pre-prod", "liveness"] {
            assert!(!production.name_matches(name), "{name}");
        }
        for tag in ["live", "env:live", "environment:LIVE", "env:production"] {
            assert!(production.tag_matches(tag), "{tag}");
        }
        assert!(!production.tag_matches("env:lively"));
    }

    #[test]
    fn a_configuration_written_out_loads_to_itself() {
        for text in [
            "{}",
            include_str!("../config/example.yaml"),
            "mode: warn\nrules: {document-invalid: audit}\nproduction: {include: ['^LIVE$'], exclude: [], tags: [Live], allServers: true}\nkubernetes: {inspectAllConfigMaps: true, kinds: [{kind: Contract, field: /spec/doc}], namespaces: {defaultMode: warn, exclude: [a]}}\nexceptions: {namespaces: [x, y], maxDuration: 36h 5m, warnBefore: 1s}\n",
        ] {
            let config = parse(text).unwrap();
            let written = config.to_yaml();
            assert_eq!(parse(&written).unwrap(), config, "{written}");
        }
        assert_ne!(parse("mode: warn").unwrap(), Config::default());
    }

    #[test]
    fn a_full_configuration() {
        let config = parse(
            "mode: enforce\nrules:\n  security-scope-undefined: warn\n  document-invalid: audit\nproduction:\n  include: ['^live$']\n  exclude: []\n  tags: [live]\n  allServers: false\nlimits:\n  maxDocumentBytes: 1000\n  maxDepth: 50\nkubernetes:\n  inspectAllConfigMaps: true\n  kinds:\n    - group: events.example.com\n      kind: Contract\n      field: /spec/asyncapi\n",
        )
        .unwrap();
        assert_eq!(
            config.policy.rule_modes[&RuleId::SecurityScopeUndefined],
            Mode::Warn
        );
        assert!(config.policy.production.name_matches("LIVE"));
        assert!(!config.policy.production.name_matches("production"));
        assert!(config.policy.production.tag_matches("Live"));
        assert_eq!(config.policy.limits.max_bytes, 1000);
        assert!(config.kubernetes.inspect_all_config_maps);
        assert_eq!(config.kubernetes.kinds[0].field, "/spec/asyncapi");
        assert_eq!(config.exceptions, ExceptionPolicy::default());
    }

    #[test]
    fn exceptions_count_where_and_as_long_as_configured() {
        let config = parse(
            "exceptions:\n  namespaces: [platform, asyncapi-guard]\n  maxDuration: 30d\n  warnBefore: 72h\n",
        )
        .unwrap();
        assert_eq!(config.exceptions.namespaces, ["platform", "asyncapi-guard"]);
        assert_eq!(
            config.exceptions.max_duration,
            std::time::Duration::from_secs(30 * 24 * 3600)
        );
        assert_eq!(
            config.exceptions.warn_before,
            std::time::Duration::from_secs(72 * 3600)
        );
        let none = parse("exceptions:\n  namespaces: []\n").unwrap();
        assert!(none.exceptions.namespaces.is_empty());
    }

    #[test]
    fn errors_name_the_field_the_reason_and_the_line() {
        let cases = [
            (
                "mode: strict\n",
                "config.yaml:1:1: mode: unknown variant `strict`",
            ),
            (
                "rules:\n  server-security: warn\n",
                "config.yaml:2:3: rules.server-security: unknown rule \"server-security\"",
            ),
            (
                "production:\n  include:\n    - ok\n    - '('\n",
                "config.yaml:4:7: production.include[1]: pattern \"(\" is not a valid regular expression",
            ),
            (
                "limits:\n  maxDepth: 0\n",
                "config.yaml:2:3: limits.maxDepth: must be between 2 and 1000",
            ),
            (
                "limits:\n  maxDepth: deep\n",
                "config.yaml:2:3: limits.maxDepth: invalid type",
            ),
            (
                "colour: blue\n",
                "config.yaml:1:1: colour: unknown field `colour`",
            ),
            (
                "production:\n  tags: [x]\n  names: [y]\n",
                "config.yaml:3:3: production.names: unknown field `names`",
            ),
            (
                "kubernetes:\n  kinds:\n    - kind: Contract\n      field: spec.asyncapi\n",
                "config.yaml:4:7: kubernetes.kinds[0].field: \"spec.asyncapi\" is not a JSON pointer",
            ),
            (
                "kubernetes:\n  kinds:\n    - kind: ConfigMap\n      field: /data\n",
                "kubernetes.kinds[0].kind: ConfigMap is always inspected",
            ),
            (
                "mode: [\n",
                "config.yaml:1:7: YAML syntax error: unclosed bracket",
            ),
            (
                "exceptions:\n  maxDuration: soon\n",
                "config.yaml:2:3: exceptions.maxDuration: \"soon\" is not a duration",
            ),
            (
                "a: 1\n---\nb: 2\n",
                "config.yaml:2:1: the configuration must be a single YAML document",
            ),
        ];
        for (text, expected) in cases {
            let message = parse(text).unwrap_err().to_string();
            assert!(
                message.starts_with(expected) || message.contains(expected),
                "{text:?}: {message}"
            );
        }
    }
}
