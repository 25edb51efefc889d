//! The functions' configuration, from the environment `template.yaml` sets.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub table_name: String,
    /// The JWT claim that names the caller's organization.
    pub org_claim: String,
    /// IAM roles allowed to write attempts for any organization on the IAM-authorized routes.
    pub trusted_writer_roles: Vec<String>,
}

impl Settings {
    pub const DEFAULT_ORG_CLAIM: &'static str = "org_id";

    pub fn new(table_name: impl Into<String>) -> Self {
        Settings {
            table_name: table_name.into(),
            org_claim: Self::DEFAULT_ORG_CLAIM.to_owned(),
            trusted_writer_roles: Vec::new(),
        }
    }

    /// `TABLE_NAME` (required), `ORG_CLAIM` (default `org_id`) and `TRUSTED_WRITER_ROLE_ARNS`
    /// (comma-separated role ARNs, default none).
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`Settings::from_env`], from any source of variables.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let table_name = var("TABLE_NAME").ok_or_else(|| "TABLE_NAME is not set".to_owned())?;
        let org_claim = var("ORG_CLAIM").filter(|c| !c.is_empty());
        Ok(Settings {
            org_claim: org_claim.unwrap_or_else(|| Self::DEFAULT_ORG_CLAIM.to_owned()),
            trusted_writer_roles: var("TRUSTED_WRITER_ROLE_ARNS")
                .unwrap_or_default()
                .split(',')
                .map(str::trim)
                .filter(|r| !r.is_empty())
                .map(str::to_owned)
                .collect(),
            ..Self::new(table_name)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trusted_writers_are_a_comma_separated_list() {
        let settings = Settings::from_vars(|name| match name {
            "TABLE_NAME" => Some("t".to_owned()),
            "TRUSTED_WRITER_ROLE_ARNS" => Some(" arn:a , ,arn:b".to_owned()),
            _ => None,
        })
        .unwrap();
        assert_eq!(settings.trusted_writer_roles, ["arn:a", "arn:b"]);
        assert_eq!(settings.org_claim, "org_id");
        assert!(Settings::from_vars(|_| None).unwrap_err().contains("TABLE_NAME"));
    }
}
