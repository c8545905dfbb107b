//! The release is made of parts that must name one version: the tag, Cargo.toml, the chart,
//! the image tag, the binaries' names. These read the workflow and the scripts as they are.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

use asyncapi_guard::engine::document::{self, Limits, value::to_json};
use serde_json::Value;

fn yaml_file(path: &str) -> Value {
    let text = std::fs::read_to_string(common::project_dir().join(path)).unwrap();
    let stream = document::load(&text, &Limits::default()).unwrap();
    to_json(stream.roots().next().unwrap(), 100).unwrap()
}

fn cargo_version() -> String {
    let text = std::fs::read_to_string(common::project_dir().join("Cargo.toml")).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .unwrap()
        .to_owned()
}

fn release_version(args: &[&str]) -> std::process::Output {
    Command::new(common::project_dir().join("scripts/release-version"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn the_tag_cargo_toml_the_chart_and_the_changelog_name_one_version() {
    let version = cargo_version();
    let chart = yaml_file("charts/asyncapi-guard/Chart.yaml");
    assert_eq!(chart["version"], version.as_str());
    assert_eq!(chart["appVersion"], version.as_str());
    let out = release_version(&[&format!("v{version}")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), version);
    let notes = release_version(&["--notes", &format!("v{version}")]);
    assert!(String::from_utf8_lossy(&notes.stdout).contains("### Added"));

    let other = release_version(&["v99.0.0"]);
    assert!(!other.status.success());
    let why = String::from_utf8_lossy(&other.stderr);
    for part in [
        "Cargo.toml",
        "Chart.yaml version",
        "appVersion",
        "CHANGELOG.md",
    ] {
        assert!(why.contains(part), "{why}");
    }
    assert!(!release_version(&["latest"]).status.success());
}

#[test]
fn every_part_of_the_release_takes_the_checked_version() {
    let workflow = yaml_file(".github/workflows/release.yml");
    let jobs = &workflow["jobs"];
    let checked = "${{ needs.version.outputs.version }}";
    let run_of = |job: &str| -> String {
        jobs[job]["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|s| s["run"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    };
    // The version job is the one place the version comes from, and it checks it.
    assert!(run_of("version").contains("scripts/release-version"));
    for job in ["binaries", "image", "chart", "release"] {
        let needs = &jobs[job]["needs"];
        let needs_version = needs == "version"
            || needs
                .as_array()
                .is_some_and(|n| n.iter().any(|j| j == "version"));
        assert!(needs_version, "{job} needs the version job");
    }
    // The image tag.
    let image_steps = jobs["image"]["steps"].as_array().unwrap();
    let meta = image_steps
        .iter()
        .find(|s| s["id"] == "meta")
        .expect("the metadata step");
    assert_eq!(
        meta["with"]["tags"].as_str().unwrap(),
        format!("type=raw,value={checked}")
    );
    let push = image_steps.iter().find(|s| s["id"] == "push").unwrap();
    assert_eq!(push["with"]["platforms"], "linux/amd64,linux/arm64");
    assert_eq!(push["with"]["sbom"], true);
    // The chart's version and appVersion.
    let package = run_of("chart");
    assert!(
        package.contains(&format!("--version \"{checked}\""))
            && package.contains(&format!("--app-version \"{checked}\"")),
        "{package}"
    );
    // The binaries' names, and the targets the GitHub Action downloads.
    let archive = run_of("binaries");
    assert!(
        archive.contains(&format!(
            "name=\"asyncapi-guard-{checked}-${{{{ matrix.target }}}}\""
        )),
        "{archive}"
    );
    let targets: Vec<&str> = jobs["binaries"]["strategy"]["matrix"]["include"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["target"].as_str().unwrap())
        .collect();
    let action = std::fs::read_to_string(common::project_dir().join("action.yml")).unwrap();
    for target in &targets {
        assert!(
            action.contains(&format!("target={target}")),
            "action.yml downloads {target}"
        );
    }
    assert_eq!(targets.len(), 4);
    assert!(action.contains("name=\"asyncapi-guard-${tag#v}-${target}\""));

    // Least privilege: the workflow grants nothing by default, each job what it needs.
    assert_eq!(workflow["permissions"]["contents"], "read");
    assert_eq!(jobs["image"]["permissions"]["id-token"], "write");
    assert_eq!(jobs["release"]["permissions"]["contents"], "write");
    assert!(jobs["binaries"]["permissions"].is_null());
}

/// Third-party actions by release tag, never by a commit SHA nobody can check here.
#[test]
fn actions_are_pinned_by_release_tag() {
    for file in [
        ".github/workflows/ci.yml",
        ".github/workflows/release.yml",
        "action.yml",
    ] {
        let text = std::fs::read_to_string(common::project_dir().join(file)).unwrap();
        for line in text.lines().filter(|l| {
            l.trim_start().starts_with("- uses:") || l.trim_start().starts_with("uses:")
        }) {
            let reference = line.split('@').nth(1).unwrap_or_default().trim();
            assert!(
                reference.starts_with('v')
                    && reference[1..]
                        .chars()
                        .next()
                        .is_some_and(|c| c.is_ascii_digit()),
                "{file}: {line}"
            );
        }
    }
}
