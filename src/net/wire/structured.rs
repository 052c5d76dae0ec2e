//! Structured output: what serve writes when a request asks for JSON. A value that validates
//! against the request's schema (Gemini's `responseSchema` — OpenAPI-style, upper-case types,
//! `nullable`, `propertyOrdering` — or JSON Schema in `responseJsonSchema` and OpenAI's
//! `response_format`), drawn from a seeded generator and padded to about the drawn number of
//! output tokens (4 characters each). Supported: `type` (also a list), `enum`, `const`,
//! `properties`, `required`, `items`, `prefixItems`, `minItems`/`maxItems`,
//! `minLength`/`maxLength`, `minimum`/`maximum` (and exclusive), `anyOf`/`oneOf` (one branch),
//! `allOf` (the first), `$ref` into `$defs`/`definitions`, `format` date-time, date, time,
//! email, uuid, uri. `pattern` is not followed. Also the prompt that shows a JSON template
//! and asks for JSON (as gemini-flux's policy request does): [`template_schema`].

use rand::RngCore;
use serde_json::{json, Map, Value};

/// How deep a schema may nest (and `$ref`s resolve) before the request is refused.
pub const MAX_DEPTH: usize = 64;
/// The most items a schema's `minItems` may demand.
pub const MAX_MIN_ITEMS: u64 = 10_000;
/// Beyond this depth only what is required is generated (so recursive schemas end).
const SHALLOW: usize = 8;
/// The most characters (about) a schema's value may take before padding: more is refused
/// (400), so a small schema cannot make serve build gigabytes (an array of 10,000 arrays of
/// 10,000 items, or of strings of a large `minLength`). A value of 40,000 fields takes 1.2 MB.
pub const MAX_VALUE_CHARS: usize = 16 * 1024 * 1024;
/// What a scalar counts against [`MAX_VALUE_CHARS`] (a key, its quotes and punctuation).
const SCALAR_CHARS: usize = 8;

/// What a response's text is.
#[derive(Debug, Clone, PartialEq)]
pub enum Format {
    /// Words.
    Text,
    /// JSON: valid against the schema when there is one, else an object.
    Json(Option<Value>),
    /// `text/x.enum`: one of these values, bare.
    Enum(Vec<String>),
}

/// The text of a response of about `tokens` tokens in `format`. `Err` (for a 400) when the
/// schema asks for something no value satisfies or nests deeper than [`MAX_DEPTH`].
pub fn text(format: &Format, tokens: u64, r: &mut impl RngCore) -> Result<String, String> {
    match format {
        Format::Text => Ok(super::response::generated_text(tokens)),
        Format::Enum(values) if values.is_empty() => Err("text/x.enum needs a schema with enum values".into()),
        Format::Enum(values) => Ok(values[(r.next_u64() % values.len() as u64) as usize].clone()),
        Format::Json(schema) => {
            let fallback =
                json!({"type": "object", "properties": {"response": {"type": "string"}}, "required": ["response"]});
            let schema = schema.as_ref().unwrap_or(&fallback);
            let target = (tokens.min(super::response::MAX_GENERATED_TOKENS) * 4) as usize;
            generate(schema, target, r).map(|v| v.to_string())
        }
    }
}

/// Checks a schema before anything is admitted: `Err` is the message of a 400.
pub fn check(schema: &Value) -> Result<(), String> {
    let mut r = rand_pcg::Pcg64Mcg::new(1);
    generate(schema, 0, &mut r).map(|_| ())
}

/// A value valid against `schema`, its JSON about `target` characters long (as long as the
/// schema allows).
pub fn generate(schema: &Value, target: usize, r: &mut impl RngCore) -> Result<Value, String> {
    // One seed for every try, so only the padding differs between them: measure the unpadded
    // and a padded value, then solve for the padding that reaches the target.
    let seed = (r.next_u64() as u128) << 64 | r.next_u64() as u128;
    let run = |pad: usize| -> Result<Value, String> {
        let mut r = rand_pcg::Pcg64Mcg::new(seed);
        Gen {
            root: schema,
            pad,
            left: MAX_VALUE_CHARS,
            r: &mut r,
        }
        .value(schema, 0)
    };
    let bare = run(0)?;
    let base = bare.to_string().len();
    if target <= base {
        return Ok(bare);
    }
    const STEP: usize = 64;
    let grown = run(STEP)?.to_string().len();
    // Characters gained per character of padding (one per free string).
    let per = (grown - base) as f64 / STEP as f64;
    if per <= 0.0 {
        return Ok(bare);
    }
    run(((target - base) as f64 / per) as usize)
}

struct Gen<'a> {
    root: &'a Value,
    /// Characters each free string is padded to.
    pad: usize,
    /// Characters (about) the value may still take: see [`MAX_VALUE_CHARS`].
    left: usize,
    r: &'a mut dyn RngCore,
}

fn number(v: Option<&Value>) -> Option<f64> {
    match v? {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.parse().ok(),
        _ => None,
    }
}

fn count(v: Option<&Value>) -> Option<u64> {
    number(v).filter(|n| *n >= 0.0).map(|n| n as u64)
}

const WORDS: [&str; 12] = [
    "cue", "line", "scene", "take", "voice", "dub", "track", "frame", "script", "mix", "cut", "reel",
];

/// About how many characters `v` takes as JSON (what copying it costs), counted against
/// [`MAX_VALUE_CHARS`].
fn weight(v: &Value) -> usize {
    match v {
        Value::String(s) => s.len() + 2,
        Value::Array(a) => a.iter().map(weight).fold(2, usize::saturating_add),
        Value::Object(m) => m
            .iter()
            .map(|(k, v)| (k.len() + 3).saturating_add(weight(v)))
            .fold(2, usize::saturating_add),
        _ => SCALAR_CHARS,
    }
}

impl Gen<'_> {
    /// Counts `chars` more against [`MAX_VALUE_CHARS`]: `Err` once the value would be larger.
    fn charge(&mut self, chars: usize) -> Result<(), String> {
        match self.left.checked_sub(chars) {
            Some(left) => {
                self.left = left;
                Ok(())
            }
            None => Err(format!(
                "The response schema asks for a value of more than {MAX_VALUE_CHARS} characters."
            )),
        }
    }

    fn pick(&mut self, n: usize) -> usize {
        (self.r.next_u64() % n as u64) as usize
    }

    fn value(&mut self, s: &Value, depth: usize) -> Result<Value, String> {
        if depth > MAX_DEPTH {
            return Err(format!(
                "The response schema nests deeper than {MAX_DEPTH} levels (or refers to itself with no way to end)."
            ));
        }
        let Some(o) = s.as_object() else {
            return match s {
                // JSON Schema's `true` accepts anything.
                Value::Bool(true) => Ok(json!(null)),
                _ => Err(format!("A response schema must be an object; got {}.", short(s))),
            };
        };
        self.charge(SCALAR_CHARS)?;
        if let Some(reference) = o.get("$ref").and_then(Value::as_str) {
            let target = reference
                .strip_prefix("#/$defs/")
                .map(|n| ("$defs", n))
                .or_else(|| reference.strip_prefix("#/definitions/").map(|n| ("definitions", n)))
                .and_then(|(table, n)| self.root.get(table)?.get(n))
                .ok_or_else(|| format!("The response schema's $ref {reference:?} names no entry of $defs."))?;
            return self.value(target, depth + 1);
        }
        if let Some(c) = o.get("const") {
            self.charge(weight(c))?;
            return Ok(c.clone());
        }
        if let Some(e) = o.get("enum") {
            let Some(values) = e.as_array().filter(|a| !a.is_empty()) else {
                return Err("A response schema's enum must be a non-empty list.".into());
            };
            let v = &values[self.pick(values.len())];
            self.charge(weight(v))?;
            return Ok(v.clone());
        }
        for key in ["anyOf", "oneOf"] {
            if let Some(b) = o.get(key) {
                let Some(branches) = b.as_array().filter(|a| !a.is_empty()) else {
                    return Err(format!("A response schema's {key} must be a non-empty list."));
                };
                let i = self.pick(branches.len());
                return self.value(&branches[i], depth + 1);
            }
        }
        if let Some(all) = o.get("allOf").and_then(Value::as_array).and_then(|a| a.first()) {
            return self.value(all, depth + 1);
        }
        let nullable = o.get("nullable").and_then(Value::as_bool) == Some(true);
        let kind = match o.get("type") {
            Some(Value::String(t)) => t.to_ascii_lowercase(),
            Some(Value::Array(ts)) => {
                let names: Vec<String> = ts
                    .iter()
                    .filter_map(Value::as_str)
                    .map(str::to_ascii_lowercase)
                    .collect();
                match names.iter().find(|t| *t != "null") {
                    Some(t) => t.clone(),
                    None if !names.is_empty() => return Ok(Value::Null),
                    None => return Err("A response schema's type list names no type.".into()),
                }
            }
            None if o.contains_key("properties") => "object".into(),
            None if o.contains_key("items") => "array".into(),
            None => "string".into(),
            Some(other) => {
                return Err(format!(
                    "A response schema's type must be a string; got {}.",
                    short(other)
                ))
            }
        };
        if nullable && depth > SHALLOW {
            return Ok(Value::Null);
        }
        match kind.as_str() {
            "object" => self.object(o, depth),
            "array" => self.array(o, depth),
            "string" => self.string(o),
            "integer" => {
                let (lo, hi) = self.range(o, true)?;
                let (lo, hi) = (lo.ceil() as i128, hi.floor() as i128);
                if lo > hi {
                    return Err("A response schema's integer range is empty.".into());
                }
                let span = (hi - lo + 1).min(u64::MAX as i128) as u64;
                Ok(json!((lo + (self.r.next_u64() % span) as i128) as i64))
            }
            "number" => {
                let (lo, hi) = self.range(o, false)?;
                let u = (self.r.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
                let x = lo * (1.0 - u) + hi * u;
                let x = if x.abs() < 1e15 { (x * 100.0).round() / 100.0 } else { x };
                Ok(json!(x.clamp(lo, hi)))
            }
            "boolean" => Ok(json!(self.r.next_u64() & 1 == 1)),
            "null" => Ok(Value::Null),
            other => Err(format!(
                "A response schema's type {other:?} is not one of string, number, integer, boolean, array, object, null."
            )),
        }
    }

    /// The bounds of a number, 0–100 by default (within the given bounds).
    fn range(&mut self, o: &Map<String, Value>, integer: bool) -> Result<(f64, f64), String> {
        let nudge = if integer { 1.0 } else { 0.01 };
        let lo = number(o.get("minimum"))
            .or_else(|| number(o.get("exclusiveMinimum")).map(|x| x + nudge))
            .unwrap_or(f64::NAN);
        let hi = number(o.get("maximum"))
            .or_else(|| number(o.get("exclusiveMaximum")).map(|x| x - nudge))
            .unwrap_or(f64::NAN);
        let (lo, hi) = match (lo.is_nan(), hi.is_nan()) {
            (true, true) => (0.0, 100.0),
            (false, true) => (lo, lo + 100.0),
            (true, false) => (hi - 100.0, hi),
            (false, false) => (lo, hi),
        };
        if lo > hi || !lo.is_finite() || !hi.is_finite() {
            return Err("A response schema's number range is empty.".into());
        }
        Ok((lo, hi))
    }

    fn object(&mut self, o: &Map<String, Value>, depth: usize) -> Result<Value, String> {
        let empty = Map::new();
        let props = match o.get("properties") {
            None => &empty,
            Some(Value::Object(p)) => p,
            Some(other) => {
                return Err(format!(
                    "A response schema's properties must be an object; got {}.",
                    short(other)
                ))
            }
        };
        let required: Vec<&str> = o
            .get("required")
            .and_then(Value::as_array)
            .map(|r| r.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(missing) = required.iter().find(|r| !props.contains_key(**r)) {
            return Err(format!(
                "The response schema requires {missing:?}, which is not among its properties."
            ));
        }
        // Gemini's propertyOrdering, then the rest as given (sets: a template of 40,000 fields
        // took seconds with list lookups).
        let mut order: Vec<&str> = Vec::with_capacity(props.len());
        let mut seen = std::collections::HashSet::with_capacity(props.len());
        let ordering = o
            .get("propertyOrdering")
            .and_then(Value::as_array)
            .into_iter()
            .flatten();
        for k in ordering
            .filter_map(Value::as_str)
            .chain(props.keys().map(String::as_str))
        {
            if props.contains_key(k) && seen.insert(k) {
                order.push(k);
            }
        }
        let required: std::collections::HashSet<&str> = required.into_iter().collect();
        let mut out = Map::new();
        for k in order {
            if depth > SHALLOW && !required.contains(k) {
                continue;
            }
            out.insert(k.to_string(), self.value(&props[k], depth + 1)?);
        }
        Ok(Value::Object(out))
    }

    fn array(&mut self, o: &Map<String, Value>, depth: usize) -> Result<Value, String> {
        let min = count(o.get("minItems")).unwrap_or(0);
        let max = count(o.get("maxItems")).unwrap_or(u64::MAX);
        if min > MAX_MIN_ITEMS {
            return Err(format!(
                "A response schema's minItems of {min} is more than {MAX_MIN_ITEMS}."
            ));
        }
        if min > max {
            return Err("A response schema's minItems is above its maxItems.".into());
        }
        let wanted = if depth > SHALLOW { min } else { min.max(3.min(max)) };
        let prefix: &[Value] = o.get("prefixItems").and_then(Value::as_array).map_or(&[], |v| v);
        let empty = json!({});
        let items = o.get("items").unwrap_or(&empty);
        let mut out = Vec::new();
        for i in 0..wanted as usize {
            let s = prefix.get(i).unwrap_or(items);
            out.push(self.value(s, depth + 1)?);
        }
        Ok(Value::Array(out))
    }

    fn string(&mut self, o: &Map<String, Value>) -> Result<Value, String> {
        let n = self.r.next_u64();
        let fixed = match o.get("format").and_then(Value::as_str) {
            Some("date-time") => Some(format!(
                "2025-{:02}-{:02}T{:02}:{:02}:00Z",
                1 + n % 12,
                1 + n / 12 % 28,
                n / 400 % 24,
                n / 10_000 % 60
            )),
            Some("date") => Some(format!("2025-{:02}-{:02}", 1 + n % 12, 1 + n / 12 % 28)),
            Some("time") => Some(format!("{:02}:{:02}:00", n % 24, n / 24 % 60)),
            Some("email") => Some(format!("{}{}@example.com", WORDS[(n % 12) as usize], n / 12 % 1000)),
            Some("uuid") => Some(format!(
                "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
                n >> 32,
                n >> 16 & 0xffff,
                n & 0xfff,
                n >> 20 & 0xfff,
                self.r.next_u64() & 0xffff_ffff_ffff
            )),
            Some("uri") => Some(format!(
                "https://example.com/{}/{}",
                WORDS[(n % 12) as usize],
                n / 12 % 1000
            )),
            _ => None,
        };
        if let Some(f) = fixed {
            return Ok(Value::String(f));
        }
        let min = count(o.get("minLength")).unwrap_or(0) as usize;
        let max = count(o.get("maxLength")).map_or(usize::MAX, |m| m as usize);
        if min > max {
            return Err("A response schema's minLength is above its maxLength.".into());
        }
        if min > (super::response::MAX_GENERATED_TOKENS * 4) as usize {
            return Err(format!(
                "A response schema's minLength of {min} is more than serve writes."
            ));
        }
        let want = self.pad.max(min).max(1.min(max)).min(max);
        self.charge(want)?;
        let mut s = String::with_capacity(want + 8);
        let mut w = n;
        while s.len() < want {
            if !s.is_empty() {
                s.push(' ');
            }
            s.push_str(WORDS[((w >> 33) % WORDS.len() as u64) as usize]);
            w = w
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
        }
        s.truncate(want);
        // A cut that ends in a space would still be valid; trim it unless minLength needs it.
        while s.len() > min && s.ends_with(' ') {
            s.pop();
        }
        Ok(Value::String(s))
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 60 {
        format!("{}…", s.chars().take(60).collect::<String>())
    } else {
        s
    }
}

/// The schema of the JSON template a prompt shows when it asks for JSON (the word "JSON" and a
/// `{…}` block whose placeholders are `<integer>`, `<number>`, `<boolean>`, `<string>` or a
/// quoted `"<anything>"`), as gemini-flux's policy request does: every key required, literal
/// values kept, strings at most 24 characters. `None` when the prompt does not ask, or its braces hold no such template.
pub fn template_schema(prompt: &str) -> Option<Value> {
    if !prompt.to_ascii_lowercase().contains("json") {
        return None;
    }
    let start = prompt.find('{')?;
    let mut depth = 0usize;
    let mut end = None;
    for (i, c) in prompt[start..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    end = Some(start + i + 1);
                    break;
                }
            }
            _ => {}
        }
    }
    let block = &prompt[start..end?];
    // Placeholders become marker strings, then the block must parse as JSON.
    let mut text = String::with_capacity(block.len());
    let mut rest = block;
    while let Some(open) = rest.find('<') {
        let close = rest[open..].find('>')? + open;
        let name = rest[open + 1..close].trim().to_ascii_lowercase();
        let quoted = rest[..open].ends_with('"') && rest[close + 1..].starts_with('"');
        let kind = if quoted {
            "string"
        } else if name.starts_with("int") {
            "integer"
        } else if name.starts_with("num") || name.starts_with("float") {
            "number"
        } else if name.starts_with("bool") {
            "boolean"
        } else {
            "string"
        };
        text.push_str(&rest[..open - quoted as usize]);
        text.push_str(&format!("\"\\u0001{kind}\\u0001\""));
        rest = &rest[close + 1 + quoted as usize..];
    }
    text.push_str(rest);
    let example: Value = serde_json::from_str(&text).ok()?;
    Some(schema_of(&example))
}

fn schema_of(v: &Value) -> Value {
    match v {
        // A template's strings are short values, as a model filling it in writes them.
        Value::String(s) if s == "\u{1}string\u{1}" => json!({"type": "string", "maxLength": 24}),
        Value::String(s) if s.starts_with('\u{1}') && s.ends_with('\u{1}') => json!({"type": s.trim_matches('\u{1}')}),
        Value::Object(m) => json!({
            "type": "object",
            "properties": m.iter().map(|(k, v)| (k.clone(), schema_of(v))).collect::<Map<_, _>>(),
            "required": m.keys().collect::<Vec<_>>(),
        }),
        Value::Array(a) => match a.first() {
            Some(first) => json!({"type": "array", "items": schema_of(first), "minItems": 1}),
            None => json!({"type": "array", "maxItems": 0}),
        },
        other => json!({ "const": other }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gen(schema: Value, target: usize, seed: u128) -> Value {
        generate(&schema, target, &mut rand_pcg::Pcg64Mcg::new(seed)).unwrap()
    }

    #[test]
    fn objects_hold_every_property_of_the_type_given() {
        let v = gen(
            json!({"type": "OBJECT", "properties": {
                "name": {"type": "STRING"}, "age": {"type": "INTEGER", "minimum": 18, "maximum": 20},
                "mood": {"type": "STRING", "enum": ["calm", "loud"]}, "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "minItems": "2", "maxItems": "2"},
                "score": {"type": "NUMBER", "minimum": 0.5, "maximum": 0.75}, "ok": {"type": "BOOLEAN"}, "note": {"type": "STRING", "nullable": true}},
                "required": ["name", "age"], "propertyOrdering": ["name", "age"]}),
            200,
            7,
        );
        assert!(v["name"].is_string());
        assert!((18..=20).contains(&v["age"].as_i64().unwrap()));
        assert!(["calm", "loud"].contains(&v["mood"].as_str().unwrap()));
        assert_eq!(v["tags"].as_array().unwrap().len(), 2);
        let s = v["score"].as_f64().unwrap();
        assert!((0.5..=0.75).contains(&s));
        assert!(v["ok"].is_boolean());
        assert!(v["note"].is_string());
    }

    #[test]
    fn size_follows_the_target_and_the_seed_fixes_the_value() {
        let s = json!({"type": "object", "properties": {"summary": {"type": "string"}, "lines": {"type": "array", "items": {"type": "string"}}}});
        for target in [400, 4_000, 40_000] {
            let len = gen(s.clone(), target, 3).to_string().len();
            assert!(len.abs_diff(target) <= target / 10 + 16, "{len} for {target}");
        }
        assert_eq!(gen(s.clone(), 1000, 3), gen(s.clone(), 1000, 3));
        assert_ne!(gen(s.clone(), 1000, 3), gen(s, 1000, 4));
    }

    #[test]
    fn refs_recursion_and_bounds_are_followed() {
        let tree = json!({"$ref": "#/$defs/node", "$defs": {"node": {"type": "object", "properties": {
            "label": {"type": "string", "maxLength": 5}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["label"]}}});
        let v = gen(tree, 100, 1);
        assert!(v["label"].as_str().unwrap().len() <= 5);
        let endless = json!({"$ref": "#/$defs/n", "$defs": {"n": {"type": "object", "properties": {"next": {"$ref": "#/$defs/n"}}, "required": ["next"]}}});
        assert!(check(&endless).unwrap_err().contains("deeper"));
        assert!(check(&json!({"type": "integer", "minimum": 5, "maximum": 4})).is_err());
        assert!(check(&json!({"type": "array", "minItems": 1_000_000})).is_err());
        assert!(check(&json!({"type": "tuple"})).is_err());
        assert!(check(&json!({"$ref": "#/$defs/missing"})).is_err());
        assert!(check(&json!({"type": "object", "required": ["x"]})).is_err());
    }

    #[test]
    fn a_prompt_with_a_json_template_gets_its_shape() {
        let prompt = "Return ONLY a raw JSON object.\n{\n  \"pro\": {\"requests_per_day\": <integer>, \"rate\": <number>},\n  \"daily_reset_time_pt\": \"<HH:MM>\", \"v\": 2\n}\nOnly return the JSON.";
        let s = template_schema(prompt).unwrap();
        let v = gen(s, 50, 9);
        assert!(v["pro"]["requests_per_day"].is_i64());
        assert!(v["pro"]["rate"].is_number());
        assert!(v["daily_reset_time_pt"].is_string());
        assert_eq!(v["v"], 2);
        assert_eq!(template_schema("no braces, JSON please"), None);
        assert_eq!(template_schema("{\"a\": <integer>} but no format word"), None);
    }

    #[test]
    fn a_value_larger_than_the_bound_is_refused_before_it_is_built() {
        let too_big = [
            // 10,000 strings of 4,000 characters: 40 MB.
            json!({"type": "array", "minItems": 10000, "items": {"type": "string", "minLength": 4000}}),
            // A 2 kB constant 10,000 times.
            json!({"type": "array", "minItems": 10000, "items": {"const": "x".repeat(2000)}}),
            json!({"type": "array", "minItems": 10000, "items": {"enum": ["x".repeat(2000)]}}),
        ];
        for schema in too_big {
            let err = check(&schema).unwrap_err();
            assert!(err.contains("more than 16777216 characters"), "{err}");
        }
        // Just under the bound is fine.
        let ok = json!({"type": "array", "minItems": 1000, "items": {"type": "string", "minLength": 4000}});
        assert_eq!(gen(ok, 0, 1).as_array().unwrap().len(), 1000);
    }

    #[test]
    fn a_template_of_40000_fields_keeps_every_field_in_order() {
        let fields: Vec<String> = (0..40_000).map(|i| format!("\"f{i}\": \"<string>\"")).collect();
        let schema = template_schema(&format!("JSON like {{{}}}", fields.join(", "))).unwrap();
        let v = gen(schema, 0, 3);
        assert_eq!(v.as_object().unwrap().len(), 40_000);
        assert!(v["f39999"].is_string());
    }
}
