//! Who may do what with books: users by role, services (client-credentials tokens) by scope.
//! The one place these rules live; every handler calls one of them first.

use shared::{AccessClaims, Role, Scope, TokenError};

/// Reading: any user; a service with `books:read`.
pub fn may_read(claims: &AccessClaims) -> Result<(), TokenError> {
    if claims.is_service() {
        claims.require_scope(Scope::BooksRead)
    } else {
        Ok(())
    }
}

/// Creating and replacing: an editor or admin; a service with `books:write`.
pub fn may_write(claims: &AccessClaims) -> Result<(), TokenError> {
    if claims.is_service() {
        claims.require_scope(Scope::BooksWrite)
    } else {
        claims.require_any_role(&[Role::Editor, Role::Admin])
    }
}

/// Deleting: an admin with a fresh token (straight from a password login). Never a service,
/// whatever its scopes: a deletion needs a person.
pub fn may_delete(claims: &AccessClaims) -> Result<(), TokenError> {
    if claims.is_service() {
        return Err(TokenError::InsufficientRole);
    }
    claims.require_role(Role::Admin)?;
    claims.require_fresh()
}
