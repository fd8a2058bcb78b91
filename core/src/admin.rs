//! The operators' key for admin endpoints.

use sha2::{Digest, Sha256};

use crate::error::{DomainError, ErrorCode};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminKeyError {
    #[error("the admin key must be at least {min} bytes", min = AdminKey::MIN_LEN)]
    Weak,
    #[error("the admin key is wrong")]
    Wrong,
}

impl DomainError for AdminKeyError {
    fn code(&self) -> ErrorCode {
        ErrorCode::Forbidden
    }
}

/// Holds a digest of the key only, and compares digests in constant time, so neither a
/// memory dump nor response timing reveals the key.
#[derive(Clone)]
pub struct AdminKey {
    digest: [u8; 32],
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AdminKey(<redacted>)")
    }
}

impl AdminKey {
    /// Long enough that guessing over the network is hopeless.
    pub const MIN_LEN: usize = 16;

    pub fn new(secret: &str) -> Result<Self, AdminKeyError> {
        if secret.len() < Self::MIN_LEN {
            return Err(AdminKeyError::Weak);
        }
        Ok(Self {
            digest: Sha256::digest(secret.as_bytes()).into(),
        })
    }

    pub fn check(&self, presented: &str) -> Result<(), AdminKeyError> {
        let presented: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let difference = presented
            .iter()
            .zip(&self.digest)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if difference == 0 {
            Ok(())
        } else {
            Err(AdminKeyError::Wrong)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_exact_key_passes() {
        let key = AdminKey::new("correct horse battery staple").unwrap();
        assert_eq!(key.check("correct horse battery staple"), Ok(()));
        assert_eq!(
            key.check("correct horse battery staplE"),
            Err(AdminKeyError::Wrong)
        );
        assert_eq!(key.check(""), Err(AdminKeyError::Wrong));
    }

    #[test]
    fn a_short_key_is_refused_at_startup() {
        assert_eq!(AdminKey::new("admin").unwrap_err(), AdminKeyError::Weak);
    }
}
