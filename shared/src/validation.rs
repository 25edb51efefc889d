//! Field rules for what callers send. Each rule lives here once; the command parsers use them.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

/// A request that breaks a rule, named the way Stripe names it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct InvalidRequest {
    pub code: &'static str,
    pub param: Option<String>,
    pub message: String,
}

impl InvalidRequest {
    pub fn missing(param: &str) -> Self {
        Self::with("parameter_missing", param, format!("Missing required param: {param}."))
    }
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self::with("parameter_invalid", param, message.into())
    }
    pub fn unknown(param: &str) -> Self {
        Self::with("parameter_unknown", param, format!("Received unknown parameter: {param}."))
    }
    pub fn duplicate(param: &str) -> Self {
        Self::with("parameter_duplicate", param, format!("Received parameter {param} more than once."))
    }
    pub fn body(message: impl Into<String>) -> Self {
        InvalidRequest { code: "body_invalid", param: None, message: bounded(message.into()) }
    }
    /// The parameter's name is the caller's text (an unknown field, a metadata key): it comes
    /// back as [`echo`] gives it, in `param` and in the message.
    fn with(code: &'static str, param: &str, message: String) -> Self {
        let echoed = echo(param);
        let message = if echoed == param { message } else { message.replace(param, &echoed) };
        InvalidRequest { code, param: Some(echoed), message: bounded(message) }
    }
}

/// The most characters of the caller's text that an error, and so a log line, gives back.
pub const MAX_ECHO_CHARS: usize = 64;
/// A message is ours plus echoes: this bounds it whatever a caller sent.
const MAX_MESSAGE_CHARS: usize = 500;

/// The caller's text as an error gives it back: at most [`MAX_ECHO_CHARS`] characters,
/// control and bidirectional-formatting characters shown as U+FFFD, cut text marked `...`.
pub fn echo(text: &str) -> String {
    let mut shown: String =
        text.chars().take(MAX_ECHO_CHARS).map(|c| if is_unprintable(c) { '\u{FFFD}' } else { c }).collect();
    if text.chars().nth(MAX_ECHO_CHARS).is_some() {
        shown.push_str("...");
    }
    shown
}

fn bounded(message: String) -> String {
    match message.char_indices().nth(MAX_MESSAGE_CHARS) {
        Some((cut, _)) => format!("{}...", &message[..cut]),
        None => message,
    }
}

/// Text a caller stores: without characters that are not what they show.
fn printable(text: &str, param: &str) -> Result<()> {
    if text.chars().any(is_unprintable) {
        return Err(InvalidRequest::invalid(
            param,
            format!("Invalid {param}: must not contain control or bidirectional formatting characters."),
        ));
    }
    Ok(())
}

/// Control characters, and the bidirectional formatting ones that can make text read other
/// than it is (Trojan Source).
pub fn is_unprintable(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

pub type Result<T> = std::result::Result<T, InvalidRequest>;

/// A JSON object's members in order, duplicates kept so they can be refused, values unparsed so
/// numbers keep their exact text.
pub struct JsonFields(Vec<(String, Box<RawValue>)>);

impl JsonFields {
    pub fn parse(body: &[u8]) -> Result<Self> {
        if std::str::from_utf8(body).is_err() {
            return Err(InvalidRequest::body("The request body is not valid UTF-8."));
        }
        let trimmed = body.iter().find(|b| !b.is_ascii_whitespace());
        if trimmed != Some(&b'{') {
            return Err(InvalidRequest::body("The request body must be a JSON object."));
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let fields = de
            .deserialize_map(FieldsVisitor)
            .and_then(|f| de.end().map(|_| f))
            .map_err(|e| InvalidRequest::body(format!("Invalid JSON received: {e}.")))?;
        let mut seen = std::collections::HashSet::new();
        for (name, _) in &fields.0 {
            if !seen.insert(name.as_str()) {
                return Err(InvalidRequest::duplicate(name));
            }
        }
        Ok(fields)
    }

    /// Takes the field `name` out, so that what is left at the end is unknown.
    pub fn take(&mut self, name: &str) -> Option<Box<RawValue>> {
        let at = self.0.iter().position(|(n, _)| n == name)?;
        Some(self.0.remove(at).1)
    }

    /// Refuses whatever field no parser took.
    pub fn reject_unknown(&self, prefix: Option<&str>) -> Result<()> {
        match self.0.first() {
            None => Ok(()),
            Some((name, _)) => Err(InvalidRequest::unknown(&nested(prefix, name))),
        }
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = JsonFields;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<JsonFields, A::Error> {
        let mut fields = Vec::new();
        while let Some(entry) = map.next_entry::<String, Box<RawValue>>()? {
            fields.push(entry);
        }
        Ok(JsonFields(fields))
    }
}

fn nested(prefix: Option<&str>, name: &str) -> String {
    match prefix {
        Some(p) => format!("{p}[{name}]"),
        None => name.to_owned(),
    }
}

pub fn is_null(raw: &RawValue) -> bool {
    raw.get().trim() == "null"
}

/// A JSON string of 1..=`max` characters.
pub fn string(raw: &RawValue, param: &str, max: usize) -> Result<String> {
    let text: String = serde_json::from_str(raw.get())
        .map_err(|_| InvalidRequest::invalid(param, format!("Invalid {param}: must be a string.")))?;
    let len = text.chars().count();
    if len == 0 || len > max {
        return Err(InvalidRequest::invalid(
            param,
            format!("Invalid {param}: must be between 1 and {max} characters long."),
        ));
    }
    printable(&text, param)?;
    Ok(text)
}

/// A string field that may be absent or null.
pub fn optional_string(raw: Option<Box<RawValue>>, param: &str, max: usize) -> Result<Option<String>> {
    match raw {
        None => Ok(None),
        Some(raw) if is_null(&raw) => Ok(None),
        Some(raw) => string(&raw, param, max).map(Some),
    }
}

/// A required string whose characters all pass `allowed`, with `what` telling the rule.
pub fn token(raw: &RawValue, param: &str, max: usize, allowed: fn(u8) -> bool, what: &str) -> Result<String> {
    let text = string(raw, param, max)?;
    if !text.bytes().all(allowed) {
        return Err(InvalidRequest::invalid(param, format!("Invalid {param}: {what}.")));
    }
    Ok(text)
}

/// The longest capability or operation name, and the characters one may use.
const NAME_MAX: usize = 128;
const NAME_RULE: &str = "use letters, digits and `_ . : / -`";

/// A capability or operation name, such as `paid_search` or `search.query`.
pub fn capability(raw: &RawValue, param: &str) -> Result<String> {
    token(raw, param, NAME_MAX, capability_char, NAME_RULE)
}

/// The same rule for a capability given as query text (the list's filter).
pub fn capability_text(text: &str, param: &str) -> Result<String> {
    if !(1..=NAME_MAX).contains(&text.len()) || !text.bytes().all(capability_char) {
        return Err(InvalidRequest::invalid(
            param,
            format!("Invalid {param}: 1 to {NAME_MAX} characters; {NAME_RULE}."),
        ));
    }
    Ok(text.to_owned())
}

fn capability_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b':' | b'/' | b'-')
}

pub fn rail_char(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'
}

/// `sha256:` followed by 64 lowercase hex digits.
pub fn request_hash(raw: &RawValue, param: &str) -> Result<String> {
    let text = string(raw, param, 71).map_err(|_| {
        InvalidRequest::invalid(param, format!("Invalid {param}: must be `sha256:` and 64 lowercase hex digits."))
    })?;
    let ok = text
        .strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
    if !ok {
        return Err(InvalidRequest::invalid(
            param,
            format!("Invalid {param}: must be `sha256:` and 64 lowercase hex digits."),
        ));
    }
    Ok(text)
}

/// An absolute http(s) URL with a host and no credentials in it (they would end up in the audit
/// trail).
pub fn target_url(raw: &RawValue, param: &str) -> Result<String> {
    let text = string(raw, param, 2048)?;
    let invalid = || InvalidRequest::invalid(param, format!("Invalid {param}: must be an absolute http or https URL."));
    let uri: http::Uri = text.parse().map_err(|_| invalid())?;
    let scheme_ok = matches!(uri.scheme_str(), Some("https") | Some("http"));
    let authority = uri.authority().ok_or_else(invalid)?;
    if !scheme_ok || authority.host().is_empty() {
        return Err(invalid());
    }
    if authority.as_str().contains('@') {
        return Err(InvalidRequest::invalid(param, format!("Invalid {param}: must not contain credentials.")));
    }
    Ok(text)
}

/// Stripe's metadata rules: at most 50 keys of up to 40 characters, values up to 500.
pub fn metadata(raw: Option<Box<RawValue>>, param: &str) -> Result<BTreeMap<String, String>> {
    let Some(raw) = raw.filter(|r| !is_null(r)) else {
        return Ok(BTreeMap::new());
    };
    let not_object = || InvalidRequest::invalid(param, format!("Invalid {param}: must be an object of strings."));
    if !raw.get().trim_start().starts_with('{') {
        return Err(not_object());
    }
    let fields = JsonFields::parse(raw.get().as_bytes()).map_err(|e| match e.param {
        Some(key) => InvalidRequest::duplicate(&nested(Some(param), &key)),
        None => not_object(),
    })?;
    if fields.0.len() > 50 {
        return Err(InvalidRequest::invalid(param, format!("Invalid {param}: at most 50 keys.")));
    }
    let mut map = BTreeMap::new();
    for (key, value) in fields.0 {
        let key_param = nested(Some(param), &key);
        if key.is_empty() || key.chars().count() > 40 || key.contains(['[', ']']) {
            return Err(InvalidRequest::invalid(
                &key_param,
                format!("Invalid {param} key: must be 1 to 40 characters, without `[` or `]`."),
            ));
        }
        let value: String = serde_json::from_str(value.get())
            .map_err(|_| InvalidRequest::invalid(&key_param, format!("Invalid {key_param}: must be a string.")))?;
        if value.chars().count() > 500 {
            return Err(InvalidRequest::invalid(&key_param, format!("Invalid {key_param}: at most 500 characters.")));
        }
        // As for every other text field: metadata reaches logs and exports as it is.
        printable(&key, &key_param)?;
        printable(&value, &key_param)?;
        map.insert(key, value);
    }
    Ok(map)
}

/// Largest receipt kept, minified.
pub const MAX_RECEIPT_BYTES: usize = 16 * 1024;
/// Deepest nesting kept in a receipt.
pub const MAX_RECEIPT_DEPTH: usize = 32;

/// A JSON object, minified without reinterpreting any value (numbers keep their digits).
pub fn receipt(raw: Option<Box<RawValue>>, param: &str) -> Result<Box<RawValue>> {
    let text = match &raw {
        None => "{}",
        Some(r) if is_null(r) => "{}",
        Some(r) => r.get(),
    };
    if !text.trim_start().starts_with('{') {
        return Err(InvalidRequest::invalid(param, format!("Invalid {param}: must be a JSON object.")));
    }
    let minified = minify(text, MAX_RECEIPT_DEPTH).ok_or_else(|| {
        InvalidRequest::invalid(param, format!("Invalid {param}: nested deeper than {MAX_RECEIPT_DEPTH} levels."))
    })?;
    if minified.len() > MAX_RECEIPT_BYTES {
        return Err(InvalidRequest::invalid(param, format!("Invalid {param}: larger than {MAX_RECEIPT_BYTES} bytes.")));
    }
    // Valid JSON may still hold numbers no JSON reader can take (1e400): refuse them here
    // rather than return receipts that clients fail to parse.
    if serde_json::from_str::<serde_json::Value>(&minified).is_err() {
        return Err(InvalidRequest::invalid(param, format!("Invalid {param}: holds a number out of range.")));
    }
    RawValue::from_string(minified)
        .map_err(|_| InvalidRequest::invalid(param, format!("Invalid {param}: must be a JSON object.")))
}

/// Drops insignificant whitespace from valid JSON; `None` when nested deeper than `max_depth`.
fn minify(json: &str, max_depth: usize) -> Option<String> {
    let mut out = String::with_capacity(json.len());
    let (mut in_string, mut escaped, mut depth) = (false, false, 0usize);
    for c in json.chars() {
        if in_string {
            out.push(c);
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            ' ' | '\t' | '\n' | '\r' => continue,
            '"' => in_string = true,
            '{' | '[' => {
                depth += 1;
                if depth > max_depth {
                    return None;
                }
            }
            '}' | ']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        out.push(c);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(json: &str) -> Box<RawValue> {
        RawValue::from_string(json.to_owned()).unwrap()
    }

    #[test]
    fn fields_keep_exact_number_text_and_refuse_duplicates() {
        let mut f = JsonFields::parse(br#"{"a": 0.1400000000000000000001, "b": "x"}"#).unwrap();
        assert_eq!(f.take("a").unwrap().get(), "0.1400000000000000000001");
        assert_eq!(f.reject_unknown(None).unwrap_err().param.as_deref(), Some("b"));
        assert_eq!(JsonFields::parse(br#"{"a":1,"a":2}"#).err().unwrap().code, "parameter_duplicate");
        for bad in [&b"[1]"[..], b"", b"null", b"{", b"{} {}", b"\xff{}", b"\"{}\""] {
            let err = JsonFields::parse(bad).err().unwrap();
            assert_eq!((err.code, err.param), ("body_invalid", None), "{bad:?}");
        }
    }

    #[test]
    fn strings_have_bounds() {
        assert_eq!(string(&raw("\"ok\""), "p", 10).unwrap(), "ok");
        for bad in ["\"\"", "1", "null", "{}", "\"12345678901\"", "\"a\\u0000b\""] {
            assert_eq!(string(&raw(bad), "p", 10).unwrap_err().param.as_deref(), Some("p"), "{bad}");
        }
        assert_eq!(optional_string(Some(raw("null")), "p", 3).unwrap(), None);
        assert_eq!(optional_string(None, "p", 3).unwrap(), None);
    }

    #[test]
    fn tokens() {
        assert!(token(&raw("\"paid_search\""), "capability", 128, capability_char, "x").is_ok());
        assert!(token(&raw("\"search.query\""), "operation", 128, capability_char, "x").is_ok());
        assert!(token(&raw("\"paid search\""), "capability", 128, capability_char, "x").is_err());
        assert!(token(&raw("\"mpp_tempo\""), "rail", 64, rail_char, "x").is_ok());
        assert!(token(&raw("\"MPP\""), "rail", 64, rail_char, "x").is_err());
        assert!(token(&raw("\"mpp-tempo\""), "rail", 64, rail_char, "x").is_err());
    }

    #[test]
    fn request_hashes() {
        let good = format!("\"sha256:{}\"", "ab".repeat(32));
        assert!(request_hash(&raw(&good), "request_hash").is_ok());
        for bad in [
            format!("\"sha256:{}\"", "AB".repeat(32)),
            format!("\"sha256:{}\"", "ab".repeat(31)),
            format!("\"md5:{}\"", "ab".repeat(32)),
            "\"sha256:\"".to_owned(),
            "42".to_owned(),
        ] {
            assert!(request_hash(&raw(&bad), "request_hash").is_err(), "{bad}");
        }
    }

    #[test]
    fn target_urls() {
        for good in ["https://api.example.com/v1/search", "http://localhost:8080/x?q=1"] {
            assert!(target_url(&raw(&format!("\"{good}\"")), "target_url").is_ok(), "{good}");
        }
        for bad in [
            "/v1/search",
            "ftp://example.com/x",
            "https://",
            "https://user:pw@example.com/",
            "not a url",
            "mailto:a@b.c",
        ] {
            assert!(target_url(&raw(&format!("\"{bad}\"")), "target_url").is_err(), "{bad}");
        }
        let long = format!("\"https://example.com/{}\"", "a".repeat(2048));
        assert!(target_url(&raw(&long), "target_url").is_err());
    }

    #[test]
    fn errors_give_back_a_bounded_printable_echo_of_caller_text() {
        // An unknown field as long as a body: 64 characters of it come back, in both places.
        let long = format!("{}é", "k".repeat(70_000));
        let e = InvalidRequest::unknown(&long);
        let param = e.param.unwrap();
        assert_eq!((param.chars().count(), param.ends_with("...")), (MAX_ECHO_CHARS + 3, true));
        assert_eq!(e.message, format!("Received unknown parameter: {param}."));
        assert_eq!(InvalidRequest::unknown("limits").param.as_deref(), Some("limits"));
        // Control and bidi characters come back as U+FFFD.
        assert_eq!(echo("a\u{202E}b\nc"), "a\u{FFFD}b\u{FFFD}c");
        // A message of ours that quotes a long value is bounded too.
        assert!(InvalidRequest::invalid("limit", "x".repeat(10_000)).message.chars().count() <= MAX_MESSAGE_CHARS + 3);
    }

    #[test]
    fn metadata_rules() {
        let m = metadata(Some(raw(r#"{"order": "42"}"#)), "metadata").unwrap();
        assert_eq!(m.get("order").map(String::as_str), Some("42"));
        assert!(metadata(None, "metadata").unwrap().is_empty());
        let param = |json: &str| metadata(Some(raw(json)), "metadata").unwrap_err().param;
        assert_eq!(param(r#"{"order": 42}"#).as_deref(), Some("metadata[order]"));
        assert_eq!(param(r#"["a"]"#).as_deref(), Some("metadata"));
        assert_eq!(param(r#"{"a":"1","a":"2"}"#).as_deref(), Some("metadata[a]"));
        assert_eq!(param(r#"{"a":"line\nbreak"}"#).as_deref(), Some("metadata[a]"));
        let long_key = format!(r#"{{"{}": "x"}}"#, "k".repeat(41));
        assert!(param(&long_key).unwrap().starts_with("metadata[k"));
        let many: Vec<String> = (0..51).map(|i| format!("\"k{i}\":\"v\"")).collect();
        assert_eq!(param(&format!("{{{}}}", many.join(","))).as_deref(), Some("metadata"));
    }

    #[test]
    fn receipts_are_objects_minified_exactly() {
        let r =
            receipt(Some(raw(r#"{ "tx": "a b", "n": 0.10000000000000000001, "l": [ 1, {"x": "\" }"} ] }"#)), "receipt")
                .unwrap();
        assert_eq!(r.get(), r#"{"tx":"a b","n":0.10000000000000000001,"l":[1,{"x":"\" }"}]}"#);
        assert_eq!(receipt(None, "receipt").unwrap().get(), "{}");
        assert!(receipt(Some(raw("[1]")), "receipt").is_err());
        assert!(receipt(Some(raw(r#"{"n": 2.5e2222}"#)), "receipt").is_err());
        assert!(receipt(Some(raw(r#"{"n": -1e400}"#)), "receipt").is_err());
        assert!(receipt(Some(raw("\"x\"")), "receipt").is_err());
        let deep = format!("{}{}", "{\"a\":".repeat(33), "1".to_owned() + &"}".repeat(33));
        assert!(receipt(Some(raw(&deep)), "receipt").is_err());
        let big = format!(r#"{{"x":"{}"}}"#, "a".repeat(MAX_RECEIPT_BYTES));
        assert!(receipt(Some(raw(&big)), "receipt").is_err());
    }
}
