//! Credential columns sealed for their place: the associated data is the account id and
//! the column name, so a sealed value moved to another account's row, or swapped with the
//! other column, does not open (someone with write access to the database but not the key
//! cannot make acme's jobs act on globex's seller).
//!
//! Values sealed before this binding (associated data: the key id only) still open, as
//! [`Opened::Legacy`]; the API re-seals every such row once after the migrations
//! (`AccountRepo::reseal_legacy`). Upgrade the workers before the API: a worker of the
//! previous version cannot open a bound value.
use secrecy::{ExposeSecret, SecretString};

use crate::crypto::{CryptoError, SecretBox};
use crate::job::AccountId;

/// The two sealed columns of `accounts`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    ClientSecret,
    RefreshToken,
}

impl Column {
    pub fn name(self) -> &'static str {
        match self {
            Column::ClientSecret => "client_secret_enc",
            Column::RefreshToken => "refresh_token_enc",
        }
    }
}

/// What a sealed column held.
pub enum Opened {
    /// Sealed for this account and column.
    Bound(SecretString),
    /// Sealed before values were bound to their place: re-seal it.
    Legacy(SecretString),
}

impl Opened {
    pub fn secret(&self) -> &SecretString {
        match self {
            Opened::Bound(s) | Opened::Legacy(s) => s,
        }
    }
}

fn context(account: &AccountId, column: Column) -> Vec<u8> {
    format!("accounts\0{account}\0{}", column.name()).into_bytes()
}

pub fn seal(secrets: &SecretBox, account: &AccountId, column: Column, secret: &SecretString) -> Vec<u8> {
    secrets.seal(secret.expose_secret().as_bytes(), &context(account, column))
}

pub fn open(secrets: &SecretBox, account: &AccountId, column: Column, sealed: &[u8]) -> Result<Opened, CryptoError> {
    match secrets.open(sealed, &context(account, column)) {
        Ok(plain) => String::from_utf8(plain)
            .map(|s| Opened::Bound(SecretString::from(s)))
            .map_err(|_| CryptoError::NotUtf8),
        Err(CryptoError::Inauthentic) => secrets.decrypt(sealed).map(Opened::Legacy),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::EncryptionKey;

    #[test]
    fn a_value_opens_only_in_its_own_row_and_column_and_legacy_values_are_told_apart() {
        let b = SecretBox::new(&EncryptionKey::dev());
        let (acme, globex) = (AccountId::parse("acme").unwrap(), AccountId::parse("globex").unwrap());
        let sealed = seal(&b, &acme, Column::RefreshToken, &SecretString::from("rt"));
        assert!(matches!(open(&b, &acme, Column::RefreshToken, &sealed), Ok(Opened::Bound(s)) if s.expose_secret() == "rt"));
        assert!(open(&b, &globex, Column::RefreshToken, &sealed).is_err());
        assert!(open(&b, &acme, Column::ClientSecret, &sealed).is_err());
        let legacy = b.encrypt(&SecretString::from("old"));
        assert!(matches!(open(&b, &acme, Column::ClientSecret, &legacy), Ok(Opened::Legacy(s)) if s.expose_secret() == "old"));
    }
}
