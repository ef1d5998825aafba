//! `application/x-www-form-urlencoded`: the format of query strings and of HTML form bodies.
//!
//! `message=hello+world%21&x=1` is a list of `name=value` pairs joined by `&`, where `+` stands
//! for a space and `%XX` for the byte with hex value XX (WHATWG URL standard, "urlencoded parsing").
//! Node gives you this as `new URLSearchParams(body).get('message')`; here it is by hand.
//!
//! Plain percent-encoding (RFC 3986, what `encodeURIComponent` writes) is the same without the
//! `+` rule: there a `+` is just a `+`. [`Plus`] says which of the two a caller reads.

/// What a `+` stands for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plus {
    /// A space, as in forms and query strings (`hello+world`).
    IsSpace,
    /// Itself, as in plain percent-encoding (a space is only ever `%20`).
    IsPlus,
}

/// The value of the first pair named `name`, decoded to bytes (which may not be UTF-8: the caller
/// decides what to do with those). `None` if there is no such pair.
pub fn find(encoded: &[u8], name: &str) -> Option<Vec<u8>> {
    find_as(encoded, name, Plus::IsSpace)
}

/// [`find`], reading `+` as `plus` says (in the name too).
pub fn find_as(encoded: &[u8], name: &str, plus: Plus) -> Option<Vec<u8>> {
    // As the WHATWG parser does: empty pairs (`a=1&&b=2`) are skipped, a pair without `=` has an
    // empty value, and names are decoded too (`mess%61ge` is `message`).
    encoded
        .split(|&b| b == b'&')
        .filter(|pair| !pair.is_empty())
        .find_map(|pair| {
            let (key, value) = match pair.iter().position(|&b| b == b'=') {
                Some(i) => (&pair[..i], &pair[i + 1..]),
                None => (pair, &pair[pair.len()..]),
            };
            (decode_as(key, plus) == name.as_bytes()).then(|| decode_as(value, plus))
        })
}

/// Decodes `+` to a space and `%XX` to its byte. A `%` not followed by two hex digits is kept as
/// it is, as browsers do, rather than failing the whole request.
pub fn decode(input: &[u8]) -> Vec<u8> {
    decode_as(input, Plus::IsSpace)
}

/// [`decode`], reading `+` as `plus` says.
pub fn decode_as(input: &[u8], plus: Plus) -> Vec<u8> {
    let mut out = Vec::with_capacity(input.len());
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'+' if plus == Plus::IsSpace => out.push(b' '),
            b'%' => match (hex(input.get(i + 1)), hex(input.get(i + 2))) {
                (Some(hi), Some(lo)) => {
                    out.push(hi << 4 | lo);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            byte => out.push(byte),
        }
        i += 1;
    }
    out
}

fn hex(digit: Option<&u8>) -> Option<u8> {
    (*digit? as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_is_a_space_and_percent_escapes_are_bytes() {
        assert_eq!(decode(b"hello+world%21"), b"hello world!");
        assert_eq!(decode(b"a%2Bb%3d%0A"), b"a+b=\n");
        assert_eq!(decode("%C3%A9t%C3%A9".as_bytes()), "été".as_bytes());
    }

    #[test]
    fn broken_percent_escapes_are_kept_literally() {
        assert_eq!(decode(b"100%"), b"100%");
        assert_eq!(decode(b"%zz%4"), b"%zz%4");
    }

    #[test]
    fn find_takes_the_first_pair_with_that_name() {
        assert_eq!(
            find(b"a=1&message=hi+there&message=2", "message"),
            Some(b"hi there".to_vec())
        );
        assert_eq!(find(b"mess%61ge=x", "message"), Some(b"x".to_vec()));
        assert_eq!(find(b"message", "message"), Some(Vec::new()));
        assert_eq!(find(b"message=", "message"), Some(Vec::new()));
        assert_eq!(find(b"a=1&&b=2", "message"), None);
        assert_eq!(find(b"", "message"), None);
    }

    #[test]
    fn in_plain_percent_encoding_a_plus_is_a_plus() {
        assert_eq!(decode_as(b"a+b%20c%2B", Plus::IsPlus), b"a+b c+");
        assert_eq!(
            find_as(b"x=1&bytes=data:+1%0A", "bytes", Plus::IsPlus),
            Some(b"data:+1\n".to_vec())
        );
        assert_eq!(find_as(b"by+tes=1", "by tes", Plus::IsPlus), None);
    }

    #[test]
    fn decoded_bytes_need_not_be_utf8() {
        assert_eq!(find(b"message=%FF", "message"), Some(vec![0xff]));
    }
}
