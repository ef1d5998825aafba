//! `src/lib.rs` lists the modules in reading order, and that order is the dependency order: each
//! module uses only modules listed before it, so a student reading top to bottom never meets a
//! name from a file they have not read yet, and no two modules import each other.

use std::fs;

/// The modules in the order `src/lib.rs`'s doc comment lists them (`1. [`config`]: ...`).
fn reading_order() -> Vec<String> {
    let lib = fs::read_to_string("src/lib.rs").expect("read src/lib.rs");
    lib.lines()
        .filter_map(|line| line.strip_prefix("//! "))
        .filter_map(|item| {
            let (number, rest) = item.trim_start().split_once(". [`")?;
            number.parse::<u32>().ok()?;
            Some(rest.split_once('`')?.0.to_string())
        })
        .collect()
}

/// The crate modules `source` uses: every `crate::NAME` path and every name inside
/// `use crate::{a, b::c}`.
fn uses(source: &str, modules: &[String]) -> Vec<String> {
    let code: String = source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let names: Vec<&str> = match rest.strip_prefix('{') {
            // `use crate::{sse, timestamp};`: the names up to the matching brace, top level only.
            Some(group) => {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                group.split(',').map(|n| n.trim()).collect()
            }
            None => vec![rest],
        };
        for name in names {
            let name: String = name
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            if modules.contains(&name) && !found.contains(&name) {
                found.push(name);
            }
        }
    }
    found
}

#[test]
fn lib_rs_lists_every_module_once() {
    let order = reading_order();
    let mut files: Vec<String> = fs::read_dir("src")
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|f| f.strip_suffix(".rs").map(str::to_string))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    files.sort();
    let mut listed = order.clone();
    listed.sort();
    assert_eq!(
        listed, files,
        "src/lib.rs's reading list and src/*.rs differ"
    );
}

#[test]
fn every_module_uses_only_modules_listed_before_it() {
    let order = reading_order();
    assert!(order.len() > 5, "no reading order found in src/lib.rs");
    let mut wrong = Vec::new();
    for (position, module) in order.iter().enumerate() {
        let source = fs::read_to_string(format!("src/{module}.rs")).unwrap();
        for used in uses(&source, &order) {
            let used_at = order.iter().position(|m| *m == used).unwrap();
            if used_at >= position && used != *module {
                wrong.push(format!(
                    "{module} (#{}) uses {used} (#{})",
                    position + 1,
                    used_at + 1
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "modules that use later ones:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_use_finder_sees_paths_and_groups() {
    let modules: Vec<String> = ["sse", "http", "hub"].map(String::from).to_vec();
    let source = "use crate::{sse, http::{self, Request}};\n// crate::hub in a comment\nlet x = crate::hub::Hub::new();";
    assert_eq!(uses(source, &modules), ["sse", "http", "hub"]);
    assert_eq!(
        uses("// crate::hub only here", &modules),
        Vec::<String>::new()
    );
}
