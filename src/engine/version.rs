//! The AsyncAPI versions asyncapi-guard judges, and what each allows.

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SpecVersion {
    V2_0,
    V2_1,
    V2_2,
    V2_3,
    V2_4,
    V2_5,
    V2_6,
    V3_0,
    V3_1,
}

impl SpecVersion {
    pub const SUPPORTED: &'static [&'static str] = &[
        "2.0.0", "2.1.0", "2.2.0", "2.3.0", "2.4.0", "2.5.0", "2.6.0", "3.0.0", "3.1.0",
    ];

    pub fn parse(text: &str) -> Option<SpecVersion> {
        Some(match text {
            "2.0.0" => SpecVersion::V2_0,
            "2.1.0" => SpecVersion::V2_1,
            "2.2.0" => SpecVersion::V2_2,
            "2.3.0" => SpecVersion::V2_3,
            "2.4.0" => SpecVersion::V2_4,
            "2.5.0" => SpecVersion::V2_5,
            "2.6.0" => SpecVersion::V2_6,
            "3.0.0" => SpecVersion::V3_0,
            "3.1.0" => SpecVersion::V3_1,
            _ => return None,
        })
    }

    pub fn is_v3(self) -> bool {
        self >= SpecVersion::V3_0
    }

    /// Server `tags` exist from 2.5.0 and in 3.x.
    pub fn has_server_tags(self) -> bool {
        self >= SpecVersion::V2_5
    }

    /// Operations (and operation traits) carry `security` from 2.4.0 and in 3.x.
    pub fn has_operation_security(self) -> bool {
        self >= SpecVersion::V2_4
    }

    /// `components.servers` and `components.channels` exist from 2.3.0.
    pub fn has_component_servers(self) -> bool {
        self >= SpecVersion::V2_3
    }

    /// The SASL scheme types (`plain`, `scramSha256`, `scramSha512`, `gssapi`) came in 2.1.0.
    pub fn has_sasl_schemes(self) -> bool {
        self >= SpecVersion::V2_1
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SpecVersion::V2_0 => "2.0.0",
            SpecVersion::V2_1 => "2.1.0",
            SpecVersion::V2_2 => "2.2.0",
            SpecVersion::V2_3 => "2.3.0",
            SpecVersion::V2_4 => "2.4.0",
            SpecVersion::V2_5 => "2.5.0",
            SpecVersion::V2_6 => "2.6.0",
            SpecVersion::V3_0 => "3.0.0",
            SpecVersion::V3_1 => "3.1.0",
        }
    }
}

impl fmt::Display for SpecVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_supported_string_round_trips() {
        for text in SpecVersion::SUPPORTED {
            assert_eq!(SpecVersion::parse(text).unwrap().as_str(), *text);
        }
        assert_eq!(SpecVersion::parse("2.7.0"), None);
        assert_eq!(SpecVersion::parse("3.0"), None);
        assert_eq!(SpecVersion::parse("1.2.0"), None);
    }

    #[test]
    fn capabilities_follow_the_spec_history() {
        assert!(!SpecVersion::V2_4.has_server_tags());
        assert!(SpecVersion::V2_5.has_server_tags());
        assert!(!SpecVersion::V2_3.has_operation_security());
        assert!(SpecVersion::V2_4.has_operation_security());
        assert!(!SpecVersion::V2_2.has_component_servers());
        assert!(SpecVersion::V3_0.has_component_servers());
        assert!(!SpecVersion::V2_0.has_sasl_schemes());
        assert!(SpecVersion::V3_1.is_v3());
    }
}
