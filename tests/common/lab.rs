//! The page's Lab presets, as `index.html` lists them between `// LAB PRESETS BEGIN` and
//! `// LAB PRESETS END`: one per line, `["id", "bytes", status, "type", "what it shows"],`, the
//! bytes written with the Bytes box's escapes. Read once here for every test that uses them.

use super::json::Json;

/// One preset as index.html lists it.
#[derive(Debug)]
pub struct Preset {
    pub id: String,
    /// The bytes the lab sends, decoded from the page's escapes.
    pub bytes: Vec<u8>,
    pub status: u16,
    pub content_type: String,
    /// What it shows, in the page's words.
    pub what: String,
}

/// The presets between `// LAB PRESETS BEGIN` and `// LAB PRESETS END` in index.html: one per
/// line, `["id", "bytes", status, "type", "what it shows"],`.
pub fn page_presets() -> Vec<Preset> {
    let page = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/index.html"))
        .expect("read index.html");
    let begin = page
        .find("// LAB PRESETS BEGIN")
        .expect("index.html marks its presets with // LAB PRESETS BEGIN");
    let end = page
        .find("// LAB PRESETS END")
        .expect("and // LAB PRESETS END");
    page[begin..end]
        .lines()
        .skip(1)
        .map(str::trim)
        .filter(|line| line.starts_with('['))
        .map(|line| {
            let json = line.trim_end_matches(',');
            let fields = Json::parse(json).unwrap_or_else(|| panic!("not a preset: {line}"));
            let [id, bytes, status, content_type, what] = fields.as_array() else {
                panic!("a preset has five fields: {line}");
            };
            let text = |value: &Json| value.as_str().expect(line).to_string();
            Preset {
                id: text(id),
                bytes: lab_bytes(&text(bytes)),
                status: status.as_f64().expect(line) as u16,
                content_type: text(content_type),
                what: text(what),
            }
        })
        .collect()
}

/// The Lab box's escapes to bytes: `\n`, `\r`, `\0`, `\xHH` (one byte, any value), `\uHHHH` (the
/// character, in UTF-8: `\uFEFF` is a BOM) and `\\`; everything else as typed, in UTF-8.
pub fn lab_bytes(escaped: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chars = escaped.chars();
    let hex = |chars: &mut std::str::Chars, n: usize| {
        let digits: String = chars.take(n).collect();
        u32::from_str_radix(&digits, 16).unwrap_or_else(|_| panic!("bad escape in {escaped:?}"))
    };
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.extend_from_slice(c.to_string().as_bytes());
            continue;
        }
        match chars.next() {
            Some('n') => out.push(b'\n'),
            Some('r') => out.push(b'\r'),
            Some('0') => out.push(0),
            Some('\\') => out.push(b'\\'),
            Some('x') => out.push(hex(&mut chars, 2) as u8),
            Some('u') => {
                let c = char::from_u32(hex(&mut chars, 4)).expect("a character");
                out.extend_from_slice(c.to_string().as_bytes());
            }
            other => panic!("unknown escape \\{other:?} in {escaped:?}"),
        }
    }
    out
}
