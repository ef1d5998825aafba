//! Just enough JSON for the browser drivers: quoting a string, and reading a value back. Both
//! DevTools (Chromium) and WebDriver BiDi (Firefox) speak JSON over a WebSocket.

/// `text` as a JSON string literal (also a valid JavaScript string literal): the server's own
/// encoder, which the Lab's reconnect report uses too.
pub use sse_server::classroom::lab::json_string;

/// The first string value of `"field":` in `json`, unescaped (no parse of the rest).
pub fn json_string_field(json: &str, field: &str) -> Option<String> {
    let key = format!("\"{field}\":");
    let rest = &json[json.find(&key)? + key.len()..];
    match Json::parse_prefix(rest.trim_start())?.0 {
        Json::Str(text) => Some(text),
        _ => None,
    }
}

/// A parsed JSON value. Objects keep their members in order.
#[derive(Clone, Debug, PartialEq)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    /// Parses a whole document; None if it is not JSON.
    pub fn parse(text: &str) -> Option<Json> {
        let (value, rest) = Json::parse_prefix(text.trim_start())?;
        rest.trim().is_empty().then_some(value)
    }

    /// `self.key`, or None when `self` is not an object or has no such member.
    pub fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Obj(members) => members.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Follows `path` (`"result.value"`), one member name per dot.
    pub fn at(&self, path: &str) -> Option<&Json> {
        path.split('.').try_fold(self, |value, key| value.get(key))
    }

    pub fn as_str(&self) -> Option<&str> {
        match self {
            Json::Str(text) => Some(text),
            _ => None,
        }
    }

    pub fn as_f64(&self) -> Option<f64> {
        match self {
            Json::Num(n) => Some(*n),
            _ => None,
        }
    }

    pub fn as_array(&self) -> &[Json] {
        match self {
            Json::Arr(items) => items,
            _ => &[],
        }
    }

    /// One value at the start of `text` (no leading space), and the text after it.
    fn parse_prefix(text: &str) -> Option<(Json, &str)> {
        match text.chars().next()? {
            '{' => {
                let mut members = Vec::new();
                let mut rest = text[1..].trim_start();
                if let Some(after) = rest.strip_prefix('}') {
                    return Some((Json::Obj(members), after));
                }
                loop {
                    let (Json::Str(key), after) = Json::parse_prefix(rest)? else {
                        return None;
                    };
                    let after = after.trim_start().strip_prefix(':')?.trim_start();
                    let (value, after) = Json::parse_prefix(after)?;
                    members.push((key, value));
                    let after = after.trim_start();
                    match after.strip_prefix(',') {
                        Some(after) => rest = after.trim_start(),
                        None => return Some((Json::Obj(members), after.strip_prefix('}')?)),
                    }
                }
            }
            '[' => {
                let mut items = Vec::new();
                let mut rest = text[1..].trim_start();
                if let Some(after) = rest.strip_prefix(']') {
                    return Some((Json::Arr(items), after));
                }
                loop {
                    let (value, after) = Json::parse_prefix(rest)?;
                    items.push(value);
                    let after = after.trim_start();
                    match after.strip_prefix(',') {
                        Some(after) => rest = after.trim_start(),
                        None => return Some((Json::Arr(items), after.strip_prefix(']')?)),
                    }
                }
            }
            '"' => {
                let (string, len) = parse_string(&text[1..])?;
                Some((Json::Str(string), &text[1 + len..]))
            }
            't' => Some((Json::Bool(true), text.strip_prefix("true")?)),
            'f' => Some((Json::Bool(false), text.strip_prefix("false")?)),
            'n' => Some((Json::Null, text.strip_prefix("null")?)),
            _ => {
                let len = text
                    .find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c)))
                    .unwrap_or(text.len());
                Some((Json::Num(text[..len].parse().ok()?), &text[len..]))
            }
        }
    }
}

/// A string body after its opening quote: the unescaped text, and how many bytes it took with
/// the closing quote.
fn parse_string(text: &str) -> Option<(String, usize)> {
    let mut out = String::new();
    let mut chars = text.char_indices();
    let hex4 = |chars: &mut std::str::CharIndices| {
        let digits: String = chars.take(4).map(|(_, c)| c).collect();
        u32::from_str_radix(&digits, 16).ok()
    };
    loop {
        let (i, c) = chars.next()?;
        match c {
            '"' => return Some((out, i + 1)),
            '\\' => match chars.next()?.1 {
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let first = hex4(&mut chars)?;
                    // A character outside the BMP comes as two escapes, a surrogate pair; a lone
                    // surrogate (JavaScript strings may hold one) becomes U+FFFD.
                    let code = if (0xD800..0xDC00).contains(&first) {
                        let mut ahead = chars.clone();
                        match (ahead.next(), ahead.next()) {
                            (Some((_, '\\')), Some((_, 'u'))) => {
                                let second = hex4(&mut ahead)?;
                                if (0xDC00..0xE000).contains(&second) {
                                    chars = ahead;
                                    0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)
                                } else {
                                    0xFFFD
                                }
                            }
                            _ => 0xFFFD,
                        }
                    } else {
                        first
                    };
                    out.push(char::from_u32(code).unwrap_or('\u{FFFD}'));
                }
                other => out.push(other), // \" \\ \/
            },
            c => out.push(c),
        }
    }
}
