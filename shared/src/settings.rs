//! The functions' configuration, from the environment `template.yaml` sets.

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub table_name: String,
    /// The JWT claim that names the caller's organization.
    pub org_claim: String,
    /// IAM roles allowed to write attempts for any organization on the IAM-authorized routes.
    pub trusted_writer_roles: Vec<String>,
    /// Partition keys each organization's attempts spread over (the table's, fixed for its life).
    pub attempt_shards: u16,
}

impl Settings {
    pub const DEFAULT_ORG_CLAIM: &'static str = "org_id";
    pub const DEFAULT_ATTEMPT_SHARDS: u16 = 16;

    pub fn new(table_name: impl Into<String>) -> Self {
        Settings {
            table_name: table_name.into(),
            org_claim: Self::DEFAULT_ORG_CLAIM.to_owned(),
            trusted_writer_roles: Vec::new(),
            attempt_shards: Self::DEFAULT_ATTEMPT_SHARDS,
        }
    }

    /// `TABLE_NAME` (required), `ORG_CLAIM` (default `org_id`), `TRUSTED_WRITER_ROLE_ARNS`
    /// (comma-separated role ARNs, default none) and `ATTEMPT_SHARDS` (1..=256, default 16).
    pub fn from_env() -> Result<Self, String> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    /// As [`Settings::from_env`], from any source of variables.
    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let table_name = var("TABLE_NAME").ok_or_else(|| "TABLE_NAME is not set".to_owned())?;
        let org_claim = var("ORG_CLAIM").filter(|c| !c.is_empty());
        let attempt_shards = match var("ATTEMPT_SHARDS").filter(|s| !s.is_empty()) {
            None => Self::DEFAULT_ATTEMPT_SHARDS,
            Some(text) => text
                .parse()
                .ok()
                .filter(|n| (1..=256).contains(n))
                .ok_or_else(|| format!("ATTEMPT_SHARDS is {text:?}, not a number from 1 to 256"))?,
        };
        Ok(Settings {
            attempt_shards,
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
    fn attempt_shards_default_to_16_and_refuse_what_a_byte_cannot_pick() {
        let vars = |shards: Option<&str>| {
            let shards = shards.map(str::to_owned);
            Settings::from_vars(move |name| match name {
                "TABLE_NAME" => Some("t".to_owned()),
                "ATTEMPT_SHARDS" => shards.clone(),
                _ => None,
            })
        };
        assert_eq!(vars(None).unwrap().attempt_shards, 16);
        assert_eq!(vars(Some("")).unwrap().attempt_shards, 16);
        assert_eq!(vars(Some("64")).unwrap().attempt_shards, 64);
        for bad in ["0", "257", "many"] {
            assert!(vars(Some(bad)).unwrap_err().contains("ATTEMPT_SHARDS"), "{bad}");
        }
    }
}
