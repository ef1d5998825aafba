//! `src/lib.rs` lists the modules in reading order, Part I (the lesson) first, then Part II (the
//! wings). Each module uses only modules listed before it, so a student reading top to bottom
//! never meets a name from a file they have not read yet, and no two modules import each other.
//! Part I names Part II only at the seams listed in [`SEAMS`], so the lesson reads without the
//! wings.

use std::fs;
use std::path::Path;

/// How many modules Part I has: the items of lib.rs's list before the "Part II" heading.
fn part_one_len(lib: &str) -> usize {
    let part_one = lib.split("# Part II").next().unwrap_or_default();
    reading_order_in(part_one).len()
}

/// The only places where the lesson (or `main.rs`) names a wing: (user, wing used).
const SEAMS: [(&str, &str); 7] = [
    // The fan-out choosing the writer threads (`--broadcast-writers N`).
    ("hub", "fanout::writers"),
    // The hub using the shared log (`--redis URL`).
    ("hub", "redis::log"),
    // The routes calling the origin rule.
    ("routes", "classroom::origin"),
    // The routes calling the `Host` check (DNS rebinding).
    ("routes", "classroom::host"),
    // The routes dispatching `GET /lab`.
    ("routes", "classroom::lab"),
    // `main` printing the addresses for `--host 0.0.0.0`.
    ("main", "classroom::interfaces"),
    // `main` lowering the caps to what the machine's limits allow.
    ("main", "capacity"),
];

/// The modules in the order a lib.rs doc comment lists them (`1. [`config`]: ...`).
fn reading_order_in(lib: &str) -> Vec<String> {
    lib.lines()
        .filter_map(|line| line.strip_prefix("//! "))
        .filter_map(|item| {
            let (number, rest) = item.trim_start().split_once(". [`")?;
            number.parse::<u32>().ok()?;
            Some(rest.split_once('`')?.0.to_string())
        })
        .collect()
}

fn lib_rs() -> String {
    fs::read_to_string("src/lib.rs").expect("read src/lib.rs")
}

/// The file of module `name`: `fanout::writers` is `src/fanout/writers.rs`.
fn file_of(name: &str) -> String {
    format!("src/{}.rs", name.replace("::", "/"))
}

/// Every module file under `src/` as a module path, without `lib.rs`, `main.rs` and the
/// `mod.rs` files that only declare a wing's modules.
fn module_files(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_string();
        if path.is_dir() {
            module_files(&path, &format!("{prefix}{name}::"), out);
        } else if let Some(stem) = name.strip_suffix(".rs") {
            if !["lib", "main", "mod"].contains(&stem) {
                out.push(format!("{prefix}{stem}"));
            }
        }
    }
}

/// The crate modules `source` uses: every `crate::a::b` path and every name inside
/// `use crate::{a, b::c}`, each matched to the longest listed module it starts with.
fn uses(source: &str, modules: &[String]) -> Vec<String> {
    let code: String = source
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let rest = &code[at + "crate::".len()..];
        let paths: Vec<&str> = match rest.strip_prefix('{') {
            // `use crate::{sse, timestamp};`: the names up to the matching brace, top level only.
            Some(group) => {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                group.split(',').map(|n| n.trim()).collect()
            }
            None => vec![rest],
        };
        for path in paths {
            let path: String = path
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':')
                .collect();
            let module = modules
                .iter()
                .filter(|m| path == **m || path.starts_with(&format!("{m}::")))
                .max_by_key(|m| m.len());
            if let Some(module) = module {
                if !found.contains(module) {
                    found.push(module.clone());
                }
            }
        }
    }
    found
}

#[test]
fn lib_rs_lists_every_module_once() {
    let order = reading_order_in(&lib_rs());
    let mut files = Vec::new();
    module_files(Path::new("src"), "", &mut files);
    files.sort();
    let mut listed = order.clone();
    listed.sort();
    assert_eq!(
        listed, files,
        "src/lib.rs's reading list and the files under src/ differ"
    );
}

#[test]
fn every_module_uses_only_modules_listed_before_it_and_the_lesson_names_wings_only_at_seams() {
    let lib = lib_rs();
    let order = reading_order_in(&lib);
    let lesson = part_one_len(&lib);
    assert!(lesson > 5, "no Part I found in src/lib.rs");
    let mut wrong = Vec::new();
    for (position, module) in order.iter().enumerate() {
        let source = fs::read_to_string(file_of(module)).unwrap();
        for used in uses(&source, &order) {
            let used_at = order.iter().position(|m| *m == used).unwrap();
            let is_seam = SEAMS.contains(&(module.as_str(), used.as_str()));
            if used_at >= position && used != *module && !(position < lesson && is_seam) {
                wrong.push(format!(
                    "{module} (#{}) uses {used} (#{})",
                    position + 1,
                    used_at + 1
                ));
            }
        }
    }
    // `main.rs` wires Part I; of the wings it names only its seams.
    let main = fs::read_to_string("src/main.rs")
        .unwrap()
        .replace("sse_server::", "crate::");
    for used in uses(&main, &order) {
        let used_at = order.iter().position(|m| *m == used).unwrap();
        if used_at >= lesson && !SEAMS.contains(&("main", used.as_str())) {
            wrong.push(format!("main uses the wing {used} outside the seams"));
        }
    }
    assert!(
        wrong.is_empty(),
        "modules that use later ones:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn the_use_finder_sees_paths_groups_and_wings() {
    let modules: Vec<String> = ["sse", "http", "hub", "redis::log"]
        .map(String::from)
        .to_vec();
    let source = "use crate::{sse, http::{self, Request}};\n// crate::hub in a comment\nlet x = crate::hub::Hub::new();\nuse crate::redis::log::Tail;";
    assert_eq!(uses(source, &modules), ["sse", "http", "hub", "redis::log"]);
    assert_eq!(
        uses("// crate::hub only here", &modules),
        Vec::<String>::new()
    );
}

#[test]
fn part_one_ends_where_part_two_begins() {
    let lib = "//! # Part I\n//! 1. [`a`]: x\n//! 2. [`b`]: y\n//! # Part II\n//! 3. [`c::d`]: z\n";
    assert_eq!(part_one_len(lib), 2);
    assert_eq!(reading_order_in(lib), ["a", "b", "c::d"]);
}
