//! Account: your limits and usage, your own password and personal API tokens.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use drydock_core::{Error, User};
use serde::Deserialize;

use super::limits::{LimitRow, limit_rows};
use super::signin::NoFields;
use super::{Layout, PageError, Posted, Session, when};
use crate::AppState;

pub struct TokenRow {
    id: String,
    name: String,
    created: String,
    expires: String,
    last_used: String,
}

pub struct NewToken {
    name: String,
    secret: String,
}

#[derive(Template)]
#[template(path = "account.html")]
struct AccountPage {
    layout: Layout,
    me: User,
    csrf: String,
    tokens: Vec<TokenRow>,
    new_token: Option<NewToken>,
    password_error: Option<String>,
    token_error: Option<String>,
    /// Your limits, their source and your usage.
    limits: Vec<LimitRow>,
}

async fn account_page(state: &AppState, session: &Session) -> Result<AccountPage, PageError> {
    let tokens = state.drydock.auth.tokens(&session.caller).await?;
    Ok(AccountPage {
        layout: session.layout("account"),
        me: session.caller.user.clone(),
        csrf: session.csrf.clone(),
        tokens: tokens
            .into_iter()
            .map(|t| TokenRow {
                created: when(t.created),
                expires: t.expires.map_or_else(|| "never".into(), when),
                last_used: t.last_used.map_or_else(|| "never".into(), when),
                id: t.id,
                name: t.name,
            })
            .collect(),
        new_token: None,
        password_error: None,
        token_error: None,
        limits: limit_rows(state, &session.caller, &session.caller.user.id).await?,
    })
}

pub async fn page(State(state): State<AppState>, session: Session) -> Result<Response, PageError> {
    let page = account_page(&state, &session).await?;
    Ok(session.page(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub struct OwnPasswordForm {
    #[serde(default, rename = "currentPassword")]
    current_password: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirm: String,
}

pub async fn password(State(state): State<AppState>, posted: Posted<OwnPasswordForm>) -> Result<Response, PageError> {
    let Posted { session, form } = posted;
    let result = if form.password != form.confirm {
        Err(Error::invalid("confirm", "the two new passwords differ"))
    } else {
        let users = &state.drydock.users;
        users.set_password(&session.caller, &session.caller.user.id, &form.password, Some(&form.current_password)).await
    };
    match result {
        Ok(()) => Ok(session.redirect("/account", "Password changed. Your other sessions were signed out.")),
        Err(e @ (Error::InvalidInput { .. } | Error::Forbidden(_))) => {
            let status = if matches!(e, Error::Forbidden(_)) { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
            let mut page = account_page(&state, &session).await?;
            page.password_error = Some(e.to_string());
            Ok(session.page(status, &page))
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Deserialize)]
pub struct TokenForm {
    #[serde(default)]
    name: String,
}

/// Creates a token and shows its secret on this one page (never stored, never cached).
pub async fn create_token(State(state): State<AppState>, posted: Posted<TokenForm>) -> Result<Response, PageError> {
    let Posted { session, form } = posted;
    match state.drydock.auth.create_token(&session.caller, &form.name).await {
        Ok((info, secret)) => {
            let mut page = account_page(&state, &session).await?;
            page.new_token = Some(NewToken { name: info.name, secret });
            Ok(session.page(StatusCode::CREATED, &page))
        }
        Err(e @ Error::InvalidInput { .. }) => {
            let mut page = account_page(&state, &session).await?;
            page.token_error = Some(e.to_string());
            Ok(session.page(StatusCode::BAD_REQUEST, &page))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn revoke_token(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, PageError> {
    let session = posted.session;
    state.drydock.auth.revoke_token(&session.caller, &id).await?;
    Ok(session.redirect("/account", "Token revoked."))
}
