//! The OpenAPI (Swagger 2.0) document of everything ajar serves: Azure's JIT
//! spec, verbatim, with its shared types inlined, merged with ajar's own paths.

use serde_json::{Map, Value};

const AZURE_JIT: &str = include_str!("../openapi/jitNetworkAccessPolicies.json");
const AZURE_TYPES: &str = include_str!("../openapi/types.json");
const AJAR: &str = include_str!("../openapi/ajar.json");
/// The paths of role definitions and assignments, principals and tokens (their
/// definitions are in `ajar.json`).
const IDENTITY_PATHS: &str = include_str!("../openapi/identity-paths.json");
/// How the Azure spec refers to its shared types file.
const TYPES_REF: &str = "../../../common/v1/types.json#";

/// Points references into the shared types file at this document instead, and
/// drops `x-ms-examples`, which name example files ajar does not serve.
fn inline_refs(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.remove("x-ms-examples");
            if let Some(Value::String(r)) = map.get_mut("$ref")
                && let Some(rest) = r.strip_prefix(TYPES_REF)
            {
                *r = format!("#{rest}");
            }
            map.values_mut().for_each(inline_refs);
        }
        Value::Array(items) => items.iter_mut().for_each(inline_refs),
        _ => {}
    }
}

fn section<'a>(doc: &'a mut Value, name: &str) -> Result<&'a mut Map<String, Value>, String> {
    let obj = doc.as_object_mut().ok_or("the document is not an object")?;
    obj.entry(name).or_insert_with(|| Value::Object(Map::new())).as_object_mut().ok_or_else(|| format!("'{name}' is not an object"))
}

fn merge(into: &mut Value, from: &Value, name: &str) -> Result<(), String> {
    if let Some(Value::Object(extra)) = from.get(name) {
        let target = section(into, name)?;
        for (k, v) in extra {
            if target.insert(k.clone(), v.clone()).is_some() {
                return Err(format!("'{name}/{k}' is defined twice"));
            }
        }
    }
    Ok(())
}

/// Azure's spec names its api-version only in `info.version` (which its code generators read), while
/// the shared `ApiVersion` parameter it uses is any string. The server refuses every api-version but
/// [`crate::API_VERSION`] on these paths, so the served document says so, for clients and test
/// generators that read parameters only.
fn pin_api_version(doc: &mut Value) -> Result<(), String> {
    let param =
        doc.pointer_mut("/parameters/ApiVersion").and_then(Value::as_object_mut).ok_or("the shared ApiVersion parameter is missing")?;
    param.insert("enum".into(), serde_json::json!([crate::API_VERSION]));
    Ok(())
}

/// The path of one JIT policy (GET, PUT, DELETE).
const POLICY_PATH: &str = "/subscriptions/{subscriptionId}/resourceGroups/{resourceGroupName}/providers/Microsoft.Security/locations/{ascLocation}/jitNetworkAccessPolicies/{jitNetworkAccessPolicyName}";

/// ajar's conditional writes on a policy (see `JitPolicyVersion` in `ajar.json`), added to Azure's
/// operations without changing anything of theirs: the `ETag` header on GET and PUT, `If-Match` and
/// `If-None-Match` on PUT and DELETE, and their 412.
fn add_conditional_writes(paths: &mut Value) -> Result<(), String> {
    let item = paths.get_mut(POLICY_PATH).and_then(Value::as_object_mut).ok_or("the policy's path is missing")?;
    let etag = serde_json::json!({"ETag": {"type": "string", "description": "The policy version's entity tag (see JitPolicyVersion)."}});
    for method in ["get", "put", "delete"] {
        let op = item.get_mut(method).and_then(Value::as_object_mut).ok_or_else(|| format!("the policy's {method} is missing"))?;
        if method != "delete" {
            let ok = op.get_mut("responses").and_then(|r| r.get_mut("200")).and_then(Value::as_object_mut);
            ok.ok_or_else(|| format!("the policy's {method} has no 200"))?.insert("headers".into(), etag.clone());
        }
        if method == "get" {
            continue;
        }
        let params =
            op.get_mut("parameters").and_then(Value::as_array_mut).ok_or_else(|| format!("the policy's {method} has no parameters"))?;
        params.push(serde_json::json!({"$ref": "#/parameters/IfMatch"}));
        params.push(serde_json::json!({"$ref": "#/parameters/IfNoneMatch"}));
        let responses =
            op.get_mut("responses").and_then(Value::as_object_mut).ok_or_else(|| format!("the policy's {method} has no responses"))?;
        responses.insert(
            "412".into(),
            serde_json::json!({"description": "PreconditionFailed: the policy is not the version If-Match names (or exists, with If-None-Match: *); nothing was written.", "schema": {"$ref": "#/definitions/CloudError"}}),
        );
    }
    Ok(())
}

pub fn document() -> Result<Value, String> {
    let mut doc: Value = serde_json::from_str(AZURE_JIT).map_err(|e| format!("Azure JIT spec: {e}"))?;
    let types: Value = serde_json::from_str(AZURE_TYPES).map_err(|e| format!("Azure types: {e}"))?;
    let ajar: Value = serde_json::from_str(AJAR).map_err(|e| format!("ajar spec: {e}"))?;
    inline_refs(&mut doc);
    add_conditional_writes(doc.get_mut("paths").ok_or("Azure's spec has no paths")?)?;
    for part in ["definitions", "parameters"] {
        merge(&mut doc, &types, part)?;
        merge(&mut doc, &ajar, part)?;
    }
    merge(&mut doc, &ajar, "paths")?;
    let identity: Value = serde_json::from_str(IDENTITY_PATHS).map_err(|e| format!("identity paths: {e}"))?;
    merge(&mut doc, &identity, "paths")?;
    pin_api_version(&mut doc)?;
    let obj = doc.as_object_mut().ok_or("the document is not an object")?;
    // Served by whatever host the client reached, with bearer tokens instead of Azure AD.
    obj.remove("host");
    obj.insert("info".into(), serde_json::json!({
        "title": "ajar",
        "version": crate::API_VERSION,
        "description": "Just-in-time access to management ports. Speaks Azure's Microsoft.Security/jitNetworkAccessPolicies API (api-version 2020-01-01) and ajar's own API under /ajar/v1. Every call needs 'Authorization: Bearer <token>'."
    }));
    obj.insert(
        "securityDefinitions".into(),
        serde_json::json!({
            "bearer": {"type": "apiKey", "name": "Authorization", "in": "header", "description": "Bearer <API token>"},
            "joinToken": {"type": "apiKey", "name": "Authorization", "in": "header", "description": "Bearer <the server's agent join token>"},
            "agentToken": {"type": "apiKey", "name": "Authorization", "in": "header", "description": "Bearer <an agent's own credential>"}
        }),
    );
    obj.insert("security".into(), serde_json::json!([{"bearer": []}]));
    Ok(doc)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every `$ref` points at something the document defines.
    fn refs(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r.clone());
                }
                m.values().for_each(|v| refs(v, out));
            }
            Value::Array(a) => a.iter().for_each(|v| refs(v, out)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_resolves() {
        let doc = document().unwrap();
        let mut all = Vec::new();
        refs(&doc, &mut all);
        assert!(!all.is_empty());
        for r in all {
            let pointer = r.strip_prefix('#').unwrap_or_else(|| panic!("external reference left: {r}"));
            assert!(doc.pointer(pointer).is_some(), "{r} does not resolve");
        }
    }

    #[test]
    fn api_version_is_the_one_served() {
        let doc = document().unwrap();
        assert_eq!(doc["parameters"]["ApiVersion"]["enum"], serde_json::json!([crate::API_VERSION]));
        assert_eq!(doc["parameters"]["AuthorizationApiVersion"]["enum"], serde_json::json!([crate::authorization::API_VERSION]));
    }

    #[test]
    fn jit_part_is_azures_verbatim() {
        let doc = document().unwrap();
        let azure: Value = serde_json::from_str(AZURE_JIT).unwrap();
        for (name, def) in azure["definitions"].as_object().unwrap() {
            let mut expected = def.clone();
            inline_refs(&mut expected);
            assert_eq!(doc["definitions"][name], expected, "definition {name}");
        }
        // The paths as Azure wrote them, with ajar's conditional writes and nothing else added.
        let mut paths = azure["paths"].clone();
        add_conditional_writes(&mut paths).unwrap();
        for (path, item) in paths.as_object().unwrap() {
            let mut expected = item.clone();
            inline_refs(&mut expected);
            assert_eq!(doc["paths"][path], expected, "path {path}");
        }
    }
}
