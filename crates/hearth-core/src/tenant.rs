//! Tenants: every key in Hearth starts with one (Cortex/Mimir `X-Scope-OrgID`).

use std::fmt;
use std::sync::Arc;

/// The HTTP header that names the tenant of a request, as Cortex and Mimir use it.
pub const TENANT_HEADER: &str = "X-Scope-OrgID";
/// The tenant of every request when multi-tenancy is off or the header is absent.
pub const DEFAULT_TENANT: &str = "anonymous";

/// A tenant id: a short, validated string that is safe as a path component.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tenant(Arc<str>);

impl Tenant {
    /// Validates a tenant id the way Mimir does: 1..=150 bytes of `[A-Za-z0-9!_.*'()-]`,
    /// and neither `.` nor `..`.
    pub fn new(id: &str) -> Result<Tenant, String> {
        if id.is_empty() {
            return Err("tenant id is empty".into());
        }
        if id.len() > 150 {
            return Err("tenant id is longer than 150 bytes".into());
        }
        if id == "." || id == ".." {
            return Err(format!("tenant id {id:?} is not allowed"));
        }
        if let Some(c) = id
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || "!-_.*'()".contains(*c)))
        {
            return Err(format!("tenant id contains unsupported character {c:?}"));
        }
        Ok(Tenant(Arc::from(id)))
    }

    /// The default tenant, `anonymous`.
    pub fn anonymous() -> Tenant {
        Tenant(Arc::from(DEFAULT_TENANT))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Tenant {
    fn default() -> Self {
        Tenant::anonymous()
    }
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tenant({})", self.0)
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The tenant of a request from its `X-Scope-OrgID` header. With multi-tenancy off every
/// request belongs to `anonymous`; with it on the header is required.
pub fn tenant_from_header(header: Option<&str>, multitenancy: bool) -> Result<Tenant, String> {
    if !multitenancy {
        return Ok(Tenant::anonymous());
    }
    match header {
        None => Err("no org id".to_string()),
        Some(h) => Tenant::new(h.trim()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_ids() {
        assert!(Tenant::new("team-a").is_ok());
        assert!(Tenant::new("").is_err());
        assert!(Tenant::new("..").is_err());
        assert!(Tenant::new("a/b").is_err());
        assert!(Tenant::new(&"x".repeat(151)).is_err());
    }
}
