//! The class hour's spine: `src/lib.rs` lists the functions a teacher walks through for
//! `GET /events` and `/send`, README.md's "Walk through the code in class" lists the same, in
//! the same order, every one of them exists, and together they stay short enough for an hour.

use std::fs;

/// Most lines the spine's functions may have together, from each `fn` line to its closing
/// brace (doc comments not counted): about what a class reads in an hour.
const MAX_SPINE_LINES: usize = 400;

/// The (file, item) pointers of the lines of `text` from the line `start` to the next line
/// starting with `stop`: each line's backticked `src/...` path, then the items after it up to
/// the colon that starts the line's explanation.
fn pointers(text: &str, start: &str, stop: &str) -> Vec<(String, String)> {
    let mut lines = text.lines().skip_while(|line| !line.starts_with(start));
    assert!(lines.next().is_some(), "no {start:?}");
    let mut found = Vec::new();
    for line in lines.take_while(|line| !line.starts_with(stop)) {
        let listed = line.split("`: ").next().unwrap_or_default();
        let mut file = None;
        for (index, span) in listed.split('`').enumerate() {
            if index % 2 == 0 {
                continue; // outside the backticks
            }
            if span.starts_with("src/") {
                file = Some(span.to_string());
            } else if let Some(file) = &file {
                found.push((file.clone(), span.to_string()));
            }
        }
    }
    found
}

fn lib_spine() -> Vec<(String, String)> {
    let lib = fs::read_to_string("src/lib.rs").unwrap();
    pointers(&lib, "//! # The class hour", "//! #")
}

/// The type an `impl` line is for: `impl<'a> Member<'a> {` and `impl Drop for Member<'_> {`
/// are both for `Member`.
fn impl_type(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("impl")?;
    // Skip the impl's own generics, `<'a>` or `<T: AsRef<Client>>`.
    let rest = match rest.strip_prefix('<') {
        Some(generics) => {
            let mut depth = 1;
            let end = generics.find(|c| {
                depth += match c {
                    '<' => 1,
                    '>' => -1,
                    _ => 0,
                };
                depth == 0
            })?;
            &generics[end + 1..]
        }
        None => rest,
    };
    let rest = rest.rsplit(" for ").next()?.trim_start();
    rest.split(|c: char| !c.is_alphanumeric() && c != '_')
        .next()
}

/// The lines of function `item` (`name` or `Type::name`) in `file`, from `fn` to its closing
/// brace; `None` if it is not there.
fn function_lines(file: &str, item: &str) -> Option<usize> {
    let source = fs::read_to_string(file).ok()?;
    let lines: Vec<&str> = source.lines().collect();
    let (owner, name) = match item.split_once("::") {
        Some((owner, name)) => (Some(owner), name),
        None => (None, item),
    };
    let mut current = None;
    for (at, line) in lines.iter().enumerate() {
        if line.starts_with("impl") {
            current = impl_type(line);
        }
        let code = line.trim_start();
        let indent = &line[..line.len() - code.len()];
        let code = code.strip_prefix("pub ").unwrap_or(code);
        let declares =
            code.starts_with(&format!("fn {name}(")) || code.starts_with(&format!("fn {name}<"));
        // A free function sits at the left margin; a method inside its type's `impl`.
        let right_place = match owner {
            None => indent.is_empty(),
            Some(owner) => !indent.is_empty() && current == Some(owner),
        };
        if declares && right_place {
            let end = lines[at..]
                .iter()
                .position(|l| *l == format!("{indent}}}"))?;
            return Some(end + 1);
        }
    }
    None
}

#[test]
fn the_readme_walks_through_the_same_spine_as_lib_rs() {
    let readme = fs::read_to_string("README.md").unwrap();
    let walk = pointers(&readme, "## Walk through the code in class", "## ");
    assert!(lib_spine().len() > 10, "a spine in src/lib.rs");
    assert_eq!(walk, lib_spine());
}

#[test]
fn every_function_of_the_spine_exists_and_the_spine_fits_in_an_hour() {
    let mut total = 0;
    let mut missing = Vec::new();
    for (file, item) in lib_spine() {
        match function_lines(&file, &item) {
            Some(lines) => total += lines,
            None => missing.push(format!("{file} {item}")),
        }
    }
    assert!(missing.is_empty(), "not found: {missing:?}");
    eprintln!("the spine: {total} lines");
    assert!(
        total <= MAX_SPINE_LINES,
        "the spine has {total} lines, over {MAX_SPINE_LINES}"
    );
}

#[test]
fn an_impl_line_names_the_type_it_is_for() {
    assert_eq!(impl_type("impl<'a> Member<'a> {"), Some("Member"));
    assert_eq!(impl_type("impl<T: AsRef<C>> Roster<T> {"), Some("Roster"));
    assert_eq!(impl_type("impl Drop for Member<'_> {"), Some("Member"));
}
