//! Who is calling, only from what API Gateway verified: a JWT's organization claim, or an
//! IAM role on the trusted writer list.

use lambda_http::request::RequestContext;
use lambda_http::{Request, RequestExt};

use super::*;
use crate::id::OrganizationId;
use crate::idempotency::KeyNamespace;
use crate::settings::Settings;
use crate::validation::InvalidRequest;

/// Who is calling, from the identity API Gateway verified and put in the request context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// A person or dashboard whose JWT names their organization.
    Member(OrganizationId),
    /// An AWS service on the allow-list (IAM auth); it names the organization in the body.
    TrustedWriter { role: String },
}

impl Caller {
    pub fn from_request(req: &Request, settings: &Settings) -> Result<Caller, ApiError> {
        let iam = match req.request_context_ref() {
            Some(RequestContext::ApiGatewayV2(ctx)) => ctx.authorizer.as_ref().and_then(|a| a.iam.as_ref()),
            _ => None,
        };
        let Some(iam) = iam else { return organization(req, settings).map(Caller::Member) };
        let caller = iam.user_arn.as_deref().and_then(role_of).ok_or_else(ApiError::unauthenticated)?;
        if settings.trusted_writer_roles.iter().any(|allowed| role_of(allowed).as_ref() == Some(&caller)) {
            Ok(Caller::TrustedWriter { role: caller.to_string() })
        } else {
            tracing::warn!(caller = %caller, "IAM caller not on the trusted writer list");
            Err(ApiError::forbidden())
        }
    }

    /// The organization a write is for: the member's own, or the one a trusted writer names.
    pub fn organization_for(&self, named_in_body: Option<OrganizationId>) -> Result<OrganizationId, ApiError> {
        match (self, named_in_body) {
            (Caller::Member(org), None) => Ok(org.clone()),
            (Caller::Member(_), Some(_)) => Err(InvalidRequest::invalid(
                "organization_id",
                "organization_id comes from your credentials and cannot be set in the body.",
            )
            .into()),
            (Caller::TrustedWriter { .. }, Some(org)) => Ok(org),
            (Caller::TrustedWriter { .. }, None) => Err(InvalidRequest::missing("organization_id").into()),
        }
    }

    /// Whose idempotency keys this caller's are among.
    pub fn key_namespace(&self) -> KeyNamespace {
        match self {
            Caller::Member(_) => KeyNamespace::Member,
            Caller::TrustedWriter { .. } => KeyNamespace::TrustedWriter,
        }
    }
}

/// An IAM role, as `arn:<partition>:iam::<account>:role/<name>`, from a role ARN (with or
/// without a path) or the assumed-role ARN API Gateway reports for a caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Role {
    partition: String,
    account: String,
    name: String,
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "arn:{}:iam::{}:role/{}", self.partition, self.account, self.name)
    }
}

pub fn role_of(arn: &str) -> Option<Role> {
    let mut parts = arn.splitn(6, ':');
    let (Some("arn"), Some(partition), Some(service), Some(""), Some(account), Some(resource)) =
        (parts.next(), parts.next(), parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return None;
    };
    let name = match service {
        "iam" => resource.strip_prefix("role/")?.rsplit('/').next()?,
        "sts" => resource.strip_prefix("assumed-role/")?.split('/').next()?,
        _ => return None,
    };
    let valid = !name.is_empty() && account.len() == 12 && account.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| Role { partition: partition.to_owned(), account: account.to_owned(), name: name.to_owned() })
}

/// The caller's organization, only from the verified JWT in the request context.
pub fn organization(req: &Request, settings: &Settings) -> Result<OrganizationId, ApiError> {
    let claims = match req.request_context_ref() {
        Some(RequestContext::ApiGatewayV2(ctx)) => {
            ctx.authorizer.as_ref().and_then(|a| a.jwt.as_ref()).map(|jwt| &jwt.claims)
        }
        _ => None,
    };
    let org = claims.and_then(|c| c.get(&settings.org_claim)).and_then(|v| OrganizationId::parse(v));
    org.ok_or_else(ApiError::unauthenticated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::StatusCode;
    #[test]
    fn no_request_context_means_no_identity() {
        let settings = Settings::new("t");
        let e = organization(&Request::default(), &settings).unwrap_err();
        assert_eq!((e.status(), e.code.as_str()), (StatusCode::UNAUTHORIZED, "unauthenticated"));
    }

    #[test]
    fn roles_from_role_and_assumed_role_arns() {
        let role = role_of("arn:aws:iam::123456789012:role/payments-writer").unwrap();
        assert_eq!(role.to_string(), "arn:aws:iam::123456789012:role/payments-writer");
        assert_eq!(role_of("arn:aws:sts::123456789012:assumed-role/payments-writer/session-1"), Some(role.clone()));
        assert_eq!(role_of("arn:aws:iam::123456789012:role/service/payments-writer"), Some(role.clone()));
        assert_ne!(role_of("arn:aws:iam::999999999999:role/payments-writer"), Some(role.clone()));
        assert_ne!(role_of("arn:aws-cn:iam::123456789012:role/payments-writer"), Some(role));
        for bad in [
            "",
            "payments-writer",
            "arn:aws:iam::123456789012:user/alice",
            "arn:aws:iam::1234:role/x",
            "arn:aws:s3:::bucket",
        ] {
            assert_eq!(role_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn members_write_for_their_organization_trusted_writers_name_it() {
        let org = OrganizationId::parse("org_acme").unwrap();
        let other = OrganizationId::parse("org_other").unwrap();
        let member = Caller::Member(org.clone());
        assert_eq!(member.organization_for(None), Ok(org.clone()));
        assert_eq!(member.organization_for(Some(other.clone())).unwrap_err().param.as_deref(), Some("organization_id"));
        let writer = Caller::TrustedWriter { role: "r".to_owned() };
        assert_eq!(writer.organization_for(Some(other.clone())), Ok(other));
        let missing = writer.organization_for(None).unwrap_err();
        assert_eq!((missing.code.as_str(), missing.param.as_deref()), ("parameter_missing", Some("organization_id")));
    }
}
