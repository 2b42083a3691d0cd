//! Input rules shared by the API, the CLI and the dashboard. Each error names its field.

use crate::error::{Error, Result};

pub const NAME_MIN: usize = 3;
pub const NAME_MAX: usize = 64;
pub const EMAIL_MAX: usize = 254;
pub const PASSWORD_MIN: usize = 8;
pub const PASSWORD_MAX: usize = 1024;
pub const TOKEN_NAME_MAX: usize = 100;

pub fn user_name(name: &str) -> Result<()> {
    let len = name.chars().count();
    if !(NAME_MIN..=NAME_MAX).contains(&len) {
        return Err(Error::invalid("name", format!("name must be {NAME_MIN} to {NAME_MAX} characters long")));
    }
    if !name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-')) {
        return Err(Error::invalid("name", "name may only contain lowercase letters a-z, digits and . _ -"));
    }
    Ok(())
}

/// A practical e-mail check: one `@`, a non-empty local part, a dotted domain, no spaces.
pub fn email(email: &str) -> Result<()> {
    if email.len() > EMAIL_MAX {
        return Err(Error::invalid("email", format!("email must be at most {EMAIL_MAX} characters long")));
    }
    let bad = || Error::invalid("email", format!("email '{email}' is not a valid e-mail address"));
    let (local, domain) = email.split_once('@').ok_or_else(bad)?;
    let domain_ok = !domain.is_empty()
        && !domain.starts_with(['.', '-'])
        && !domain.ends_with(['.', '-'])
        && !domain.contains("..")
        && domain.chars().all(|c| c.is_alphanumeric() || c == '.' || c == '-');
    let local_ok = !local.is_empty()
        && local.len() <= 64
        && !local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"' | ',' | ';' | '@'));
    if local_ok && domain_ok { Ok(()) } else { Err(bad()) }
}

pub fn password(field: &str, password: &str) -> Result<()> {
    let len = password.chars().count();
    if len < PASSWORD_MIN {
        return Err(Error::invalid(field, format!("{field} must be at least {PASSWORD_MIN} characters long")));
    }
    if len > PASSWORD_MAX {
        return Err(Error::invalid(field, format!("{field} must be at most {PASSWORD_MAX} characters long")));
    }
    Ok(())
}

pub fn token_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(Error::invalid("name", "name must not be empty"));
    }
    if name.chars().count() > TOKEN_NAME_MAX {
        return Err(Error::invalid("name", format!("name must be at most {TOKEN_NAME_MAX} characters long")));
    }
    if name.chars().any(char::is_control) {
        return Err(Error::invalid("name", "name must not contain control characters"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(user_name("alice").is_ok());
        assert!(user_name("a.b_c-9").is_ok());
        assert!(user_name("ab").is_err());
        assert!(user_name(&"a".repeat(65)).is_err());
        assert!(user_name("Alice").is_err());
        assert!(user_name("al ice").is_err());
    }

    #[test]
    fn emails() {
        assert!(email("a@example.com").is_ok());
        assert!(email("admin@localhost").is_ok());
        for bad in ["", "a", "@x.com", "a@", "a@.com", "a@x..com", "a b@x.com", "a@b@c"] {
            assert!(email(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn passwords() {
        assert!(password("password", "12345678").is_ok());
        assert!(password("password", "1234567").is_err());
    }
}
