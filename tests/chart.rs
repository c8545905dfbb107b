//! The Helm chart: lint, render for every ci/*-values.yaml, validate offline against the
//! Kubernetes 1.36 schemas, and check the facts that matter (tests/chart/check_chart.py).
//!
//! Needs python3 with the PyPI packages helm-python-sdk and kubernetes-validate (which
//! brings jsonschema and PyYAML), so it is `#[ignore]`d: `scripts/test` runs it when they are
//! installed, and .ci/run installs them. Run without them, it fails and says what to install.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::process::Command;

fn chart_tools_present() -> bool {
    let python = Command::new("python3")
        .args(["-c", "import helm_python, jsonschema, yaml"])
        .output()
        .is_ok_and(|o| o.status.success());
    let validate = Command::new("kubernetes-validate")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    python && validate
}

#[test]
#[ignore = "needs python3 with helm-python-sdk and kubernetes-validate (.ci/run installs them)"]
fn chart_renders_lints_validates_and_checks() {
    assert!(
        chart_tools_present(),
        "the chart tools are missing: pip install helm-python-sdk kubernetes-validate"
    );
    let output = Command::new("python3")
        .arg(common::project_dir().join("tests/chart/check_chart.py"))
        .arg(common::binary())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("{stdout}");
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
}
