//! Unsigned JWTs for local runs. The local server reads claims from the token without
//! verifying its signature, as API Gateway's JWT authorizer would after verifying it.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::{Map, Value};

/// A token (`alg: none`) carrying `claims`.
pub fn unsigned(claims: &Value) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{payload}.")
}

/// The claims of a `Bearer` token, flattened to strings the way API Gateway hands JWT claims
/// to a Lambda. `None` when there is no readable token.
pub fn claims(authorization: &str) -> Option<Map<String, Value>> {
    let token = authorization.strip_prefix("Bearer ").or_else(|| authorization.strip_prefix("bearer "))?;
    let payload = token.trim().split('.').nth(1)?;
    let bytes = URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    let claims: Map<String, Value> = serde_json::from_slice(&bytes).ok()?;
    Some(
        claims
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s,
                    // API Gateway renders arrays as `[a b]` and other values as their JSON text.
                    Value::Array(items) => {
                        let parts: Vec<String> = items
                            .iter()
                            .map(|i| i.as_str().map(str::to_owned).unwrap_or_else(|| i.to_string()))
                            .collect();
                        format!("[{}]", parts.join(" "))
                    }
                    other => other.to_string(),
                };
                (k, Value::String(text))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_claims_as_strings() {
        let token = unsigned(&json!({"org_id": "org_acme", "n": 5, "groups": ["a", "b"]}));
        let claims = claims(&format!("Bearer {token}")).unwrap();
        assert_eq!(claims["org_id"], "org_acme");
        assert_eq!(claims["n"], "5");
        assert_eq!(claims["groups"], "[a b]");
        assert!(super::claims("Basic abc").is_none());
        assert!(super::claims("Bearer not-a-jwt").is_none());
    }
}
