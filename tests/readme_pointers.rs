//! The guides point students at the code; this test keeps every pointer true.
//!
//! The convention (README.md states it at the top):
//!
//! - A **pointer** is a backticked file path, `src/sse.rs`, optionally followed by backticked
//!   item names in that file, separated only by spaces, commas or a word such as "and":
//!   `src/sse.rs` `encode`, `lines`. An item is `name` or `Type::name`. A line break counts as
//!   a space: Markdown joins the lines of a paragraph, so an item may wrap onto the next line.
//! - A **test name** is any backticked lowercase snake_case name with at least
//!   [`TEST_NAME_UNDERSCORES`] underscores, e.g. `first_frame_is_retry_3000`.
//!
//! The test fails, listing every broken one, when a path does not exist, when an item is not
//! declared in its file (`fn`, `const`, `struct`, `enum`, `static`, `mod`, `trait` or `type` in
//! Rust; `function`, `const`, `let`, `class` or an `id` in HTML), when a test name is not a
//! `#[test]` function anywhere in `src/` or `tests/`, or when a link points at a missing file or
//! heading. Fenced code blocks are not read.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// The documents checked.
const DOCS: [&str; 2] = ["README.md", "README.es.md"];

/// A backticked text starting with one of these is a path in the repository.
const PATH_PREFIXES: [&str; 5] = ["src/", "tests/", "examples/", "deploy/", ".ci/"];

/// Files at the top of the repository that the guides name.
const TOP_FILES: [&str; 5] = [
    "index.html",
    "README.md",
    "README.es.md",
    "Cargo.toml",
    ".gitignore",
];

/// A backticked snake_case name with at least this many underscores is read as a test name.
const TEST_NAME_UNDERSCORES: usize = 3;

/// Names of that shape that are not tests of ours (directives of other programs).
const NOT_TEST_NAMES: [&str; 1] = ["http2_max_concurrent_streams"];

/// Words that may stand between a path and its items, or between two items.
const ITEM_SEPARATORS: [&str; 5] = ["and", "or", "y", "o", "e"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One backticked span of a line: where it starts and ends in the line, and its text.
struct Span {
    start: usize,
    end: usize,
    text: String,
}

/// The inline code spans of one line (CommonMark: a run of n backticks up to the next run of
/// exactly n; one space is trimmed from each end when both ends have one).
fn code_spans(line: &str) -> Vec<Span> {
    let bytes = line.as_bytes();
    let run_at = |i: usize| bytes[i..].iter().take_while(|&&b| b == b'`').count();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'`' {
            i += 1;
            continue;
        }
        let n = run_at(i);
        let mut j = i + n;
        let mut close = None;
        while j < bytes.len() {
            if bytes[j] == b'`' {
                let m = run_at(j);
                if m == n {
                    close = Some(j);
                    break;
                }
                j += m;
            } else {
                j += 1;
            }
        }
        match close {
            Some(c) => {
                let mut text = &line[i + n..c];
                if text.len() > 2 && text.starts_with(' ') && text.ends_with(' ') {
                    text = &text[1..text.len() - 1];
                }
                spans.push(Span {
                    start: i,
                    end: c + n,
                    text: text.to_string(),
                });
                i = c + n;
            }
            None => i += n,
        }
    }
    spans
}

/// The lines of a Markdown document outside fenced code blocks, with their line numbers.
fn prose_lines(doc: &str) -> Vec<(usize, &str)> {
    let mut fence: Option<&str> = None;
    let mut out = Vec::new();
    for (index, line) in doc.lines().enumerate() {
        let trimmed = line.trim_start();
        match fence {
            Some(f) if trimmed.starts_with(f) => fence = None,
            Some(_) => {}
            None if trimmed.starts_with("```") => fence = Some("```"),
            None if trimmed.starts_with("~~~") => fence = Some("~~~"),
            None => out.push((index + 1, line)),
        }
    }
    out
}

fn is_path(text: &str) -> bool {
    !text.contains(char::is_whitespace)
        && (PATH_PREFIXES.iter().any(|p| text.starts_with(p)) || TOP_FILES.contains(&text))
}

fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `name` or `Type::name`.
fn is_item(text: &str) -> bool {
    text.split("::").all(is_identifier)
}

fn is_test_name(text: &str) -> bool {
    text.bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && text.starts_with(|c: char| c.is_ascii_lowercase())
        && text.matches('_').count() >= TEST_NAME_UNDERSCORES
        && !NOT_TEST_NAMES.contains(&text)
}

/// Only spaces, punctuation that lists things, and the words in [`ITEM_SEPARATORS`].
fn only_separators(between: &str) -> bool {
    between
        .split(|c: char| c.is_whitespace() || c == ',')
        .all(|word| word.is_empty() || ITEM_SEPARATORS.contains(&word))
}

/// Every `.rs` file under `dir`.
fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The names of the `#[test]` functions in `source`.
fn test_functions(source: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut after_test_attribute = false;
    for line in source.lines().map(str::trim) {
        if line.starts_with("#[test]") {
            after_test_attribute = true;
        } else if after_test_attribute {
            if let Some(rest) = line.split("fn ").nth(1) {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                names.push(name);
                after_test_attribute = false;
            } else if !(line.starts_with("#[") || line.starts_with("//") || line.is_empty()) {
                after_test_attribute = false;
            }
        }
    }
    names
}

/// Every `#[test]` function in `src/` and `tests/`.
fn all_tests() -> BTreeSet<String> {
    let mut files = Vec::new();
    rust_files(&root().join("src"), &mut files);
    rust_files(&root().join("tests"), &mut files);
    files
        .iter()
        .flat_map(|f| test_functions(&fs::read_to_string(f).unwrap()))
        .collect()
}

/// `word` occurs in `text` with no identifier character on either side.
fn has_word_after(text: &str, prefix: &str, word: &str) -> bool {
    let needle = format!("{prefix}{word}");
    let ident = |c: char| c.is_ascii_alphanumeric() || c == '_';
    text.match_indices(&needle).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + needle.len()..].chars().next();
        !before.is_some_and(ident) && !after.is_some_and(ident)
    })
}

/// Whether `name` is declared in the file `path` (see the module comment for what counts).
fn declares(path: &str, source: &str, name: &str) -> bool {
    let prefixes: &[&str] = if path.ends_with(".rs") {
        &[
            "fn ", "const ", "struct ", "enum ", "static ", "mod ", "trait ", "type ",
        ]
    } else if path.ends_with(".html") || path.ends_with(".js") {
        &["function ", "const ", "let ", "class ", "id=\""]
    } else {
        &[""]
    };
    prefixes.iter().any(|p| has_word_after(source, p, name))
}

/// GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter(|c| c.is_alphanumeric() || *c == ' ' || *c == '-' || *c == '_')
        .map(|c| if c == ' ' { '-' } else { c })
        .collect()
}

/// The anchors of every heading in `doc`, with `-1`, `-2`, … for repeated ones.
fn anchors(doc: &str) -> BTreeSet<String> {
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    let mut out = BTreeSet::new();
    for (_, line) in prose_lines(doc) {
        let hashes = line.bytes().take_while(|&b| b == b'#').count();
        if (1..=6).contains(&hashes) && line[hashes..].starts_with(' ') {
            let base = anchor(&line[hashes..]);
            let count = seen.entry(base.clone()).or_insert(0);
            out.insert(if *count == 0 {
                base.clone()
            } else {
                format!("{base}-{count}")
            });
            *count += 1;
        }
    }
    out
}

/// The targets of the inline links `[text](target)` in a text, each with its byte offset.
fn link_targets(line: &str) -> Vec<(usize, &str)> {
    line.match_indices("](")
        .filter_map(|(at, _)| {
            let rest = &line[at + 2..];
            rest.find(')').map(|end| (at, rest[..end].trim()))
        })
        .collect()
}

/// The blocks of a document that Markdown reads as one run of text, so that a pointer may wrap:
/// consecutive prose lines up to a blank line, joined with spaces. A table row or a heading is a
/// block of its own. Each block comes with the number of its first line and the byte offset in
/// the joined text at which each of its lines starts.
fn text_blocks(doc: &str) -> Vec<(String, Vec<(usize, usize)>)> {
    let mut blocks: Vec<(String, Vec<(usize, usize)>)> = Vec::new();
    let mut open = false;
    let mut last_line = 0;
    for (number, line) in prose_lines(doc) {
        let trimmed = line.trim_start();
        let alone = trimmed.starts_with('|') || trimmed.starts_with('#');
        if trimmed.is_empty() {
            open = false;
        } else if open && !alone && number == last_line + 1 {
            let (text, starts) = blocks.last_mut().unwrap();
            text.push(' ');
            starts.push((text.len(), number));
            text.push_str(line);
        } else {
            blocks.push((line.to_string(), vec![(0, number)]));
            open = !alone;
        }
        last_line = number;
    }
    blocks
}

/// The line of a block on which the byte at `offset` stands.
fn line_at(starts: &[(usize, usize)], offset: usize) -> usize {
    starts
        .iter()
        .take_while(|(start, _)| *start <= offset)
        .last()
        .map_or(0, |(_, number)| *number)
}

/// Every broken pointer, test name and link in one document, as `FILE:LINE: what`.
fn broken_in(doc_name: &str, tests: &BTreeSet<String>) -> Vec<String> {
    match fs::read_to_string(root().join(doc_name)) {
        Ok(doc) => broken_in_text(doc_name, &doc, tests),
        Err(_) => vec![format!("{doc_name}: missing")],
    }
}

/// Every broken pointer, test name and link in `doc`, read as the document `doc_name` (links are
/// resolved from the repository's top).
fn broken_in_text(doc_name: &str, doc: &str, tests: &BTreeSet<String>) -> Vec<String> {
    let mut broken = Vec::new();
    let mut report = |line: usize, what: String| broken.push(format!("{doc_name}:{line}: {what}"));

    for (text, starts) in text_blocks(doc) {
        let line = text.as_str();
        let spans = code_spans(line);
        let mut i = 0;
        while i < spans.len() {
            let span = &spans[i];
            let number = line_at(&starts, span.start);
            if is_path(&span.text) {
                let path = span.text.as_str();
                let file = root().join(path);
                if !file.exists() {
                    report(number, format!("`{path}` does not exist"));
                }
                let source = if file.is_file() {
                    fs::read_to_string(&file).ok()
                } else {
                    None
                };
                // Items right after the path belong to it, on this line or the next ones.
                let mut end = span.end;
                while let Some(next) = spans.get(i + 1) {
                    if !(only_separators(&line[end..next.start]) && is_item(&next.text)) {
                        break;
                    }
                    i += 1;
                    end = next.end;
                    let number = line_at(&starts, next.start);
                    if let Some(source) = &source {
                        for name in next.text.split("::") {
                            if !declares(path, source, name) {
                                report(
                                    number,
                                    format!("`{path}` `{}`: no `{name}` there", next.text),
                                );
                            }
                        }
                    }
                }
            } else if is_test_name(&span.text) && !tests.contains(&span.text) {
                report(
                    number,
                    format!("test `{}` is not a #[test] in src/ or tests/", span.text),
                );
            }
            i += 1;
        }

        for (offset, target) in link_targets(line) {
            let number = line_at(&starts, offset);
            if target.contains("://") || target.starts_with("mailto:") {
                continue;
            }
            let (file, fragment) = match target.split_once('#') {
                Some((file, fragment)) => (file, Some(fragment)),
                None => (target, None),
            };
            let file = if file.is_empty() { doc_name } else { file };
            let path = root().join(file);
            if !path.exists() {
                report(number, format!("link to `{file}`: no such file"));
                continue;
            }
            if let Some(fragment) = fragment {
                let headings = anchors(&fs::read_to_string(&path).unwrap_or_default());
                if file.ends_with(".md") && !headings.contains(fragment) {
                    report(number, format!("link to `{target}`: no such heading"));
                }
            }
        }
    }
    broken
}

#[test]
fn every_pointer_in_the_guides_names_something_that_exists() {
    let tests = all_tests();
    let broken: Vec<String> = DOCS.iter().flat_map(|d| broken_in(d, &tests)).collect();
    assert!(
        broken.is_empty(),
        "{} broken pointer(s):\n{}",
        broken.len(),
        broken.join("\n")
    );
}

#[test]
fn the_checker_reads_pointers_as_the_readme_defines_them() {
    let line = "see `src/sse.rs` `encode`, `lines` and `tick_frame`; `a` | `tests/x.rs`";
    let texts: Vec<String> = code_spans(line).into_iter().map(|s| s.text).collect();
    assert_eq!(
        texts,
        [
            "src/sse.rs",
            "encode",
            "lines",
            "tick_frame",
            "a",
            "tests/x.rs"
        ]
    );
    assert_eq!(code_spans("`` `x` ``")[0].text, "`x`");
    assert!(only_separators(", ") && only_separators(" and ") && !only_separators(" | "));
    assert!(is_path("src/sse.rs") && is_path("index.html") && !is_path("sse.rs"));
    assert!(is_item("Hub::broadcast") && !is_item("retry: 3000"));
    assert!(is_test_name("first_frame_is_retry_3000") && !is_test_name("message_frame"));
    let source = "pub fn encode() {}\npub const RETRY_MS: u64 = 3000;\n";
    assert!(declares("src/sse.rs", source, "encode"));
    assert!(declares("src/sse.rs", source, "RETRY_MS"));
    assert!(!declares("src/sse.rs", source, "enc"));
    assert_eq!(
        test_functions(
            "#[test]\n/// doc\nfn a_b() {}\nfn helper() {}\n#[test]\n#[ignore]\nfn c() {}"
        ),
        ["a_b", "c"]
    );
    assert_eq!(anchor("Node ↔ this server"), "node--this-server");
    assert_eq!(
        anchor("The `res` object, in Rust"),
        "the-res-object-in-rust"
    );
}

#[test]
fn a_pointer_whose_item_wraps_onto_the_next_line_is_checked_too() {
    let tests = all_tests();
    // Real items, each wrapped onto the next line: after the path, after a comma, in a list item.
    let good = "A frame is built by `src/sse.rs`\n`encode`, and split by\n`src/sse.rs` `encode`,\n\
                `lines`.\n\n- see `src/sse.rs`\n  `message_frame`\n";
    assert_eq!(
        broken_in_text("README.md", good, &tests),
        Vec::<String>::new()
    );
    // The same, with each wrapped item renamed to something that does not exist.
    let renamed = good
        .replace("`encode`, and", "`encode_renamed`, and")
        .replace("`lines`", "`lines_renamed`")
        .replace("`message_frame`", "`message_frame_renamed`");
    assert_eq!(
        broken_in_text("README.md", &renamed, &tests),
        [
            "README.md:2: `src/sse.rs` `encode_renamed`: no `encode_renamed` there",
            "README.md:4: `src/sse.rs` `lines_renamed`: no `lines_renamed` there",
            "README.md:7: `src/sse.rs` `message_frame_renamed`: no `message_frame_renamed` there",
        ]
    );
    // A blank line ends the run: a backticked name in the next paragraph is not an item.
    let apart = "`src/sse.rs`\n\n`no_item`\n";
    assert_eq!(
        broken_in_text("README.md", apart, &tests),
        Vec::<String>::new()
    );
}
