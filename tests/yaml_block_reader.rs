//! The YAML block reader (the fast path) against the full parser: whatever the block reader
//! reads must be the very tree the full parser builds (nodes, kinds, texts, offsets,
//! heights), on the project's fixtures, on generated and mutated documents, and, when
//! `../shared` is there, on both corpora and the YAML test suite. It must also really read
//! what AsyncAPI documents are made of, or the fast path would silently be a slow path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

#[path = "../benches/generated.rs"]
mod generated;

use std::path::{Path, PathBuf};

use asyncapi_guard::engine::document::{Limits, yaml};
use proptest::prelude::*;

/// Whether the block reader read `text`; panics if what it read differs from the full parser.
fn agrees(name: &str, text: &str) -> bool {
    let limits = Limits::default();
    let Some(fast) = yaml::parse_block(text, &limits) else {
        return false;
    };
    match yaml::parse_full(text, &limits) {
        Ok(full) => {
            if let Some(difference) = fast.difference(&full) {
                panic!("{name}: the block reader and the full parser differ: {difference}\n{text}");
            }
        }
        Err(error) => {
            panic!("{name}: the block reader read what the full parser refuses ({error})\n{text}")
        }
    }
    true
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            out.push(path);
        }
    }
}

/// Reads every YAML file under `dirs`; returns (files, read by the block reader).
fn over(dirs: &[PathBuf]) -> (usize, usize) {
    let mut files = Vec::new();
    for dir in dirs {
        yaml_files(dir, &mut files);
    }
    files.sort();
    let mut read = 0;
    for file in &files {
        let Ok(text) = std::fs::read_to_string(file) else {
            continue;
        };
        read += usize::from(agrees(&file.display().to_string(), &text));
    }
    (files.len(), read)
}

#[test]
fn agrees_on_the_projects_fixtures_and_reads_most_of_them() {
    let root = common::project_dir();
    let (files, read) = over(&[root.join("tests/fixtures"), root.join("examples")]);
    assert!(files > 50, "only {files} fixtures");
    // Most real documents are plain block style; the rest use anchors, tabs, nested
    // compact sequences, multi-line plain scalars, or are broken on purpose.
    assert!(
        read * 10 >= files * 8,
        "the block reader read only {read} of {files}"
    );
}

#[test]
fn agrees_on_what_the_differential_fuzz_target_found() {
    // Inputs kept as the fuzz target saw them (bytes, a byte order mark included), so the
    // fixture walk above does not read them as documents.
    let dir = common::project_dir().join("tests/fixtures/fuzz/yaml_differential");
    let mut found = 0;
    for entry in std::fs::read_dir(&dir).unwrap().flatten() {
        let bytes = std::fs::read(entry.path()).unwrap();
        let limits = Limits::default();
        let text = asyncapi_guard::engine::document::check_bytes(&bytes, &limits).unwrap();
        let name = entry.path().display().to_string();
        agrees(&name, text);
        // More than 96 comments in a row where granit looked ahead: it refused valid YAML.
        assert!(yaml::parse_full(text, &limits).is_ok(), "{name}");
        found += 1;
    }
    assert!(found > 0, "no inputs in {}", dir.display());
}

#[test]
fn agrees_on_generated_documents_and_reads_them() {
    for size in [1_000, 10_000, 100_000, 1 << 20] {
        let text = generated::generated_v3(size);
        assert!(
            agrees(&format!("generated {size}"), &text),
            "gave up on generated {size}"
        );
    }
}

#[test]
#[ignore = "needs ../shared beside the checkout (CI has it; scripts/test runs it when present)"]
fn shared_agrees_on_both_corpora_and_the_yaml_test_suite() {
    let shared = common::shared_dir().expect("../shared is not beside this checkout");
    let (files, read) = over(&[shared.join("corpus"), shared.join("wild")]);
    println!("corpora: the block reader read {read} of {files} YAML files");
    assert!(
        read * 10 >= files * 8,
        "the block reader read only {read} of {files}"
    );
    // The suite's YAML files (each case's in.yaml, and out.yaml/emit.yaml where it has
    // them): most use what the block reader leaves alone; the point is that it never reads
    // an error case or reads a valid one differently.
    let (files, read) = over(&[shared.join("conformance/yaml-test-suite")]);
    println!("YAML test suite: the block reader read {read} of its {files} YAML files");
    assert!(files > 300 && read > 20, "{read} of {files}");
}

/// A tiny deterministic generator of block-style documents, driven by a proptest seed.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> usize {
        (self.next() % n) as usize
    }

    fn pick<'s>(&mut self, options: &[&'s str]) -> &'s str {
        options[self.below(options.len() as u64)]
    }

    /// Mostly one of `usual`, now and then one of `rare` (what the block reader gives up
    /// on, or what is not YAML at all).
    fn pick_rare<'s>(&mut self, usual: &[&'s str], rare: &[&'s str]) -> &'s str {
        if self.below(12) == 0 {
            self.pick(rare)
        } else {
            self.pick(usual)
        }
    }

    fn indent_step(&mut self) -> usize {
        [1, 2, 2, 2, 4][self.below(5)]
    }

    fn comment(&mut self, out: &mut String, indent: usize) {
        match self.below(12) {
            0 => out.push('\n'),
            1 => {
                out.push_str(&" ".repeat(self.below(2 * indent as u64 + 1)));
                out.push_str("# note\n");
            }
            2 => out.push_str("   \n"),
            _ => {}
        }
    }

    fn key(&mut self) -> String {
        let key = self.pick_rare(
            &[
                "a",
                "title",
                "x-y",
                "orders:read",
                "$ref",
                "'q'",
                "\"d q\"",
                "k k",
                "1",
                "true",
                "'it''s'",
                "\"e\\n\"",
                "null",
                "b",
                "c",
                "d",
            ],
            &["<<", "-k", "a#b", "?x", "[k]", "&a k", "!t k"],
        );
        key.to_owned()
    }

    fn scalar(&mut self, indent: usize) -> String {
        match self.below(9) {
            0..=2 => self
                .pick_rare(
                    &[
                        "x",
                        "3",
                        "-3",
                        "2.6",
                        "2.6.0",
                        "true",
                        "False",
                        "~",
                        "null",
                        "0x1F",
                        ".inf",
                        "a b",
                        "a #c",
                        "a#b",
                        "x,y",
                        "x]",
                        "https://x.example/y?z=1",
                        "é ü",
                        "-.5e3",
                        "a:b",
                        "x   ",
                    ],
                    &[
                        "a: b", "[x", "-", "- x", "@x", "%x", "!x", "&a x", "*a", "'", "\"", "a\tb",
                    ],
                )
                .to_owned(),
            3 => self
                .pick_rare(
                    &[
                        "'q'",
                        "''",
                        "'it''s'",
                        "'#/components/x'",
                        "'a: b'",
                        "'a\n  b'",
                        "'a\n\n  b\n  '",
                        "'a  \n   b  c  '",
                    ],
                    &["'a\nb'", "'a", "'a'b"],
                )
                .to_owned(),
            4 => self
                .pick_rare(
                    &[
                        "\"q\"",
                        "\"\"",
                        "\"a\\nb\"",
                        "\"\\u00e9\\x41\\t\"",
                        "\"a\n  b\"",
                        "\"a\n\n  b\"",
                        "\"\\\"\\\\\"",
                    ],
                    &["\"\\ud83d\\ude80\"", "\"a\\\n  b\"", "\"\\q\"", "\"a"],
                )
                .to_owned(),
            5 => {
                let header =
                    self.pick_rare(&["|", "|-", ">", ">-", "| # c"], &["|+", "|2", ">\n", "|x"]);
                let pad = " ".repeat(indent + self.indent_step());
                let lines = self.below(4) + 1;
                let mut s = format!("{header}\n");
                for i in 0..lines {
                    match self.below(8) {
                        0 if i > 0 => s.push('\n'),
                        1 => s.push_str(&format!("{pad}  more indented\n")),
                        _ => s.push_str(&format!("{pad}line {i} # not a comment\n")),
                    }
                }
                s.pop();
                s
            }
            6 => self
                .pick_rare(
                    &[
                        "[]",
                        "{}",
                        "[a, b]",
                        "[a, b, ]",
                        "{a: 1, b: [x, y]}",
                        "{\"a\":1}",
                        "[[1], {x: y}]",
                        "{type: string}",
                        "[orders:write]",
                        "[-1, -x]",
                        "['q', \"r\"]",
                        "[a] # c",
                        "{ a : b }",
                    ],
                    &["[a: b]", "{a, b}", "{a: }", "[a", "[a] b", "[a,\n  b]"],
                )
                .to_owned(),
            7 => {
                // A multi-line plain scalar (a wrapped description): lines past the
                // collection's column, blank lines, trailing spaces; now and then a line at
                // the column (which ends it) or one that is not text.
                let mut s = self
                    .pick(&["x", "a b", "1", "true", "a#b", "x  "])
                    .to_owned();
                for _ in 0..=self.below(3) {
                    match self.below(6) {
                        0 => s.push('\n'),
                        1 => s.push_str("  "),
                        _ => {}
                    }
                    let pad = if self.below(12) == 0 {
                        indent
                    } else {
                        indent + 1 + self.below(3)
                    };
                    s.push('\n');
                    s.push_str(&" ".repeat(pad));
                    s.push_str(self.pick_rare(
                        &["y", "y z", "a:b", "é 🚀", "2", "y  ", "c#d"],
                        &["y: z", "y #c", "- y", "# c", "y:", "'y'", "[y]", "? y"],
                    ));
                }
                s
            }
            _ => String::new(),
        }
    }

    fn node(&mut self, out: &mut String, indent: usize, depth: usize, in_seq_item: bool) {
        let choice = if depth > 4 { 2 } else { self.below(3) };
        match choice {
            0 => self.mapping(out, indent, depth, in_seq_item),
            1 => self.sequence(out, indent, depth, in_seq_item),
            _ => {
                let s = self.scalar(indent);
                out.push_str(&s);
                out.push('\n');
            }
        }
    }

    fn mapping(&mut self, out: &mut String, indent: usize, depth: usize, compact: bool) {
        let n = self.below(4) + 1;
        for i in 0..n {
            if i > 0 || !compact {
                self.comment(out, indent);
                out.push_str(&" ".repeat(indent));
            }
            out.push_str(&self.key());
            out.push_str(self.pick_rare(&[": ", ": ", ":  ", " : "], &[":", ":\t"]));
            match self.below(4) {
                0 => {
                    // A nested collection on the following lines.
                    out.push('\n');
                    let inner = if self.below(4) == 0 {
                        indent
                    } else {
                        indent + self.indent_step()
                    };
                    out.push_str(&" ".repeat(inner));
                    if inner == indent {
                        self.sequence(out, inner, depth + 1, true);
                    } else {
                        self.node(out, inner, depth + 1, true);
                    }
                }
                _ => {
                    let s = self.scalar(indent);
                    out.push_str(&s);
                    out.push('\n');
                }
            }
        }
    }

    fn sequence(&mut self, out: &mut String, indent: usize, depth: usize, compact: bool) {
        let n = self.below(3) + 1;
        for i in 0..n {
            if i > 0 || !compact {
                self.comment(out, indent);
                out.push_str(&" ".repeat(indent));
            }
            out.push_str(self.pick(&["- ", "- ", "-  ", "-"]));
            let step = if out.ends_with("- ") {
                2
            } else if out.ends_with("-  ") {
                3
            } else {
                1
            };
            match self.below(3) {
                0 => {
                    out.push('\n');
                    let inner = indent + self.indent_step();
                    out.push_str(&" ".repeat(inner));
                    self.node(out, inner, depth + 1, true);
                }
                _ => self.node(out, indent + step, depth + 1, true),
            }
        }
    }

    fn document(&mut self) -> String {
        let mut out = String::new();
        if self.below(5) == 0 {
            out.push_str(self.pick_rare(
                &[
                    "---\n",
                    "--- # c\n",
                    "# head\n\n",
                    "\u{feff}",
                    "\u{feff}---\n",
                ],
                &["%YAML 1.2\n---\n", "--- x\n"],
            ));
        }
        let indent = if self.below(16) == 0 { 1 } else { 0 };
        out.push_str(&" ".repeat(indent));
        if self.below(4) == 0 {
            self.sequence(&mut out, indent, 0, true);
        } else {
            self.mapping(&mut out, indent, 0, true);
        }
        match self.below(30) {
            0 => out.push_str("...\n"),
            1 => out.push_str("---\nb: 2\n"),
            2 => {
                out.pop();
            }
            _ => {}
        }
        out
    }
}

/// Bytes that change what YAML means, for mutations.
const SIGNIFICANT: &[u8] = b" \n:-#'\"|>[]{},&*!?%\\\t\rx0";

proptest! {
    // 20,000 cases in CI (a fraction of a second); PROPTEST_CASES runs longer searches.
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(20_000),
    ))]

    #[test]
    fn generated_and_mutated_block_documents(seed in any::<u64>(), edits in proptest::collection::vec((any::<u16>(), 0usize..SIGNIFICANT.len(), 0u8..3), 0..3)) {
        let mut generator = Gen(seed | 1);
        let mut text = generator.document().into_bytes();
        for (at, byte, how) in edits {
            let at = at as usize % (text.len() + 1);
            match how {
                0 => text.insert(at, SIGNIFICANT[byte]),
                1 if at < text.len() => { text.remove(at); }
                _ if at < text.len() => text[at] = SIGNIFICANT[byte],
                _ => {}
            }
        }
        if let Ok(text) = String::from_utf8(text) {
            agrees("generated", &text);
        }
    }
}

#[test]
fn the_generator_makes_documents_the_block_reader_reads() {
    // Without this, the property above could pass by the block reader giving up on all.
    let read = (1..=500u64)
        .filter(|seed| agrees("generated", &Gen(*seed).document()))
        .count();
    assert!(
        read >= 100,
        "the block reader read only {read} of 500 generated documents"
    );
}
