//! `docs/openapi.json` describes the REST API as the router serves it: every (path,
//! method) of `fn router` in `src/api.rs` is documented and nothing else is, every unsafe
//! operation lists the access checks' 401 and 403, and every `$ref` resolves.

use serde_json::Value;
use std::collections::BTreeSet;

const SPEC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../docs/openapi.json");
const API_RS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/api.rs");

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn spec() -> Value {
    serde_json::from_str(&read(SPEC)).unwrap_or_else(|e| panic!("docs/openapi.json is not JSON: {e}"))
}

/// The methods a route's handler expression serves: `get(h)`, `.post(h)`, ... at its top
/// level, and `health_get!(h)` for GET, HEAD and OPTIONS.
fn methods_of(expr: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut ident = String::new();
    for c in expr.chars() {
        match c {
            '(' | '!' if depth == 0 && !ident.is_empty() => {
                match ident.as_str() {
                    "health_get" => out.extend(["get", "head", "options"]),
                    "get" => out.push("get"),
                    "post" => out.push("post"),
                    "patch" => out.push("patch"),
                    "delete" => out.push("delete"),
                    "put" => out.push("put"),
                    other => panic!("route handler {other:?} in {expr:?}: teach this test what it serves"),
                }
                ident.clear();
                if c == '(' {
                    depth += 1;
                }
            }
            '(' => depth += 1,
            ')' => depth -= 1,
            c if depth == 0 && (c.is_alphanumeric() || c == '_') => ident.push(c),
            _ => ident.clear(),
        }
    }
    out
}

/// Every (path, method) the router in `src/api.rs` serves.
fn served() -> BTreeSet<(String, String)> {
    let src = read(API_RS);
    assert!(
        src.contains("get($h).options($h)"),
        "health_get! no longer expands to get($h).options($h): update this test and docs/openapi.json"
    );
    let start = src.find("Router::new()").expect("Router::new() in api.rs");
    let end = start + src[start..].find(".fallback(").expect(".fallback( after Router::new()");
    let mut routes = BTreeSet::new();
    for call in src[start..end].split(".route(\"").skip(1) {
        let (path, rest) = call.split_once('"').expect("route path literal");
        let rest = rest.trim_start().strip_prefix(',').expect("comma after the route path");
        // The handler expression ends at the `)` closing `.route(`.
        let mut depth = 1usize;
        let len = rest
            .char_indices()
            .find(|&(_, c)| {
                match c {
                    '(' => depth += 1,
                    ')' => depth -= 1,
                    _ => {}
                }
                depth == 0
            })
            .map(|(i, _)| i)
            .expect("closing paren of .route(");
        let methods = methods_of(&rest[..len]);
        assert!(!methods.is_empty(), "no method found for route {path}");
        for m in methods {
            assert!(routes.insert((path.to_string(), m.to_string())), "{m} {path} routed twice");
        }
    }
    assert!(routes.len() > 10, "found only {} routes: is the parser still right?", routes.len());
    routes
}

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

#[test]
fn is_openapi_3_0() {
    let doc = spec();
    let v = doc["openapi"].as_str().expect("openapi version string");
    assert!(v.starts_with("3.0."), "openapi {v}: expected 3.0.x");
    assert_eq!(doc["info"]["version"], "0.1.0");
}

#[test]
fn documents_exactly_the_served_routes() {
    let doc = spec();
    let paths = doc["paths"].as_object().expect("paths object");
    let mut documented = BTreeSet::new();
    for (path, item) in paths {
        for (k, _) in item.as_object().expect("path item object") {
            if METHODS.contains(&k.as_str()) {
                documented.insert((path.clone(), k.clone()));
            }
        }
    }
    let served = served();
    let undocumented: Vec<_> = served.difference(&documented).collect();
    let not_served: Vec<_> = documented.difference(&served).collect();
    assert!(
        undocumented.is_empty() && not_served.is_empty(),
        "served but not in docs/openapi.json: {undocumented:?}; in docs/openapi.json but not served: {not_served:?}"
    );
}

#[test]
fn unsafe_operations_list_401_and_403() {
    let doc = spec();
    for (path, item) in doc["paths"].as_object().expect("paths object") {
        for m in ["post", "patch", "delete"] {
            let Some(op) = item.get(m) else { continue };
            for code in ["401", "403"] {
                assert!(op["responses"].get(code).is_some(), "{m} {path} does not list {code}");
            }
        }
    }
}

#[test]
fn references_resolve() {
    fn walk(doc: &Value, v: &Value) {
        match v {
            Value::Object(o) => {
                if let Some(Value::String(r)) = o.get("$ref") {
                    let ptr = r.strip_prefix('#').unwrap_or_else(|| panic!("external $ref {r}"));
                    assert!(doc.pointer(ptr).is_some(), "$ref {r} does not resolve");
                }
                o.values().for_each(|x| walk(doc, x));
            }
            Value::Array(a) => a.iter().for_each(|x| walk(doc, x)),
            _ => {}
        }
    }
    let doc = spec();
    walk(&doc, &doc);
}

/// The `Reason` enum lists every reason the daemons write or read, in declaration order.
#[test]
fn the_reason_enum_is_every_reason() {
    let spec = spec();
    let listed: Vec<&str> = spec["components"]["schemas"]["Reason"]["enum"]
        .as_array()
        .expect("a Reason enum")
        .iter()
        .map(|v| v.as_str().expect("names"))
        .collect();
    let all: Vec<String> = hacore::Reason::ALL.iter().map(|r| r.to_string()).collect();
    assert_eq!(listed, all, "update components.schemas.Reason.enum in docs/openapi.json");
}
