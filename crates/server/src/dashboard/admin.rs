//! Administration → Users: the list with search and pages, the "Add user" dialog, a user's
//! details (e-mail, password, administrator rights) and removal with confirmation.

use askama::Template;
use axum::extract::{Path, State};
use axum::http::{StatusCode, Uri};
use axum::response::Response;
use drydock_core::model::{DOMAIN_SYSTEM, MANAGE_SYSTEM, MANAGE_USERS, UserFilter};
use drydock_core::users::CreateUser;
use drydock_core::{Error, Page, Permission, User};
use serde::Deserialize;

use super::limits::{LimitRow, limit_rows};
use super::signin::NoFields;
use super::{Layout, PageError, Posted, Session, html, parse_query, percent_encode, when};
use crate::AppState;

const PAGE_SIZE: u32 = 50;

pub struct UserRow {
    id: String,
    name: String,
    email: String,
    created: String,
    admin: bool,
}

/// One page of the user list, and the links around it.
pub struct UserTable {
    q: String,
    rows: Vec<UserRow>,
    total: u64,
    page: u64,
    pages: u64,
    prev: Option<String>,
    next: Option<String>,
}

#[derive(Default)]
pub struct FieldErrors {
    general: Option<String>,
    name: Option<String>,
    email: Option<String>,
    password: Option<String>,
}

/// The "Add user" form: what was typed (never the password) and what was wrong with it.
pub struct AddUserForm {
    open: bool,
    csrf: String,
    name: String,
    email: String,
    errors: FieldErrors,
}

#[derive(Template)]
#[template(path = "users.html")]
struct UsersPage {
    layout: Layout,
    table: UserTable,
    add_form: Option<AddUserForm>,
}

#[derive(Template)]
#[template(path = "users_table.html")]
struct UsersTableFragment {
    table: UserTable,
}

#[derive(Template)]
#[template(path = "add_user.html")]
struct AddUserFragment {
    form: AddUserForm,
}

#[derive(Deserialize, Default)]
pub struct ListQuery {
    #[serde(default)]
    q: String,
    page: Option<u64>,
}

fn require_admin(session: &Session) -> Result<(), PageError> {
    session.caller.require_system(MANAGE_USERS).map_err(Into::into)
}

async fn user_table(state: &AppState, session: &Session, query: ListQuery) -> Result<UserTable, PageError> {
    let q = query.q.trim().to_string();
    let page = query.page.unwrap_or(1).max(1);
    let filter = UserFilter { text: (!q.is_empty()).then(|| q.clone()), ..Default::default() };
    let users = &state.drydock.users;
    let skip_count = (page - 1).saturating_mul(u64::from(PAGE_SIZE));
    let (found, total) = users.list(&session.caller, &filter, Page { max_items: PAGE_SIZE, skip_count }).await?;
    let admins = users.system_actions(&session.caller).await?;
    let rows = found
        .into_iter()
        .map(|u| UserRow {
            admin: admins.get(&u.id).is_some_and(|a| a.iter().any(|x| x == MANAGE_SYSTEM)),
            created: when(u.created),
            id: u.id,
            name: u.name,
            email: u.email,
        })
        .collect();
    let pages = total.div_ceil(u64::from(PAGE_SIZE)).max(1);
    let link = |p: u64| format!("q={}&page={p}", percent_encode(&q));
    Ok(UserTable {
        rows,
        total,
        page,
        pages,
        prev: (page > 1).then(|| link(page - 1)),
        next: (page < pages).then(|| link(page + 1)),
        q,
    })
}

pub async fn users(State(state): State<AppState>, session: Session, uri: Uri) -> Result<Response, PageError> {
    require_admin(&session)?;
    let table = user_table(&state, &session, parse_query(uri.query())?).await?;
    Ok(session.page(StatusCode::OK, &UsersPage { layout: session.layout("admin"), table, add_form: None }))
}

/// The table alone, for htmx (search as you type, pages).
pub async fn table(State(state): State<AppState>, session: Session, uri: Uri) -> Result<Response, PageError> {
    require_admin(&session)?;
    let table = user_table(&state, &session, parse_query(uri.query())?).await?;
    Ok(html(StatusCode::OK, &UsersTableFragment { table }))
}

pub async fn new_user(State(state): State<AppState>, session: Session) -> Result<Response, PageError> {
    require_admin(&session)?;
    let form = AddUserForm {
        open: !session.htmx,
        csrf: session.csrf.clone(),
        name: String::new(),
        email: String::new(),
        errors: FieldErrors::default(),
    };
    add_user_response(&state, &session, StatusCode::OK, form).await
}

/// The dialog: alone for htmx, else on the users page, open.
async fn add_user_response(
    state: &AppState,
    session: &Session,
    status: StatusCode,
    form: AddUserForm,
) -> Result<Response, PageError> {
    if session.htmx {
        // htmx swaps only 2xx answers: the dialog with its errors comes back as 200.
        return Ok(html(StatusCode::OK, &AddUserFragment { form }));
    }
    let table = user_table(state, session, ListQuery::default()).await?;
    Ok(session.page(status, &UsersPage { layout: session.layout("admin"), table, add_form: Some(form) }))
}

#[derive(Deserialize)]
pub struct NewUserForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

pub async fn create(State(state): State<AppState>, posted: Posted<NewUserForm>) -> Result<Response, PageError> {
    let Posted { session, form } = posted;
    require_admin(&session)?;
    let input = CreateUser { name: form.name.clone(), email: form.email.clone(), password: form.password };
    match state.drydock.users.create(&session.caller, input).await {
        Ok(user) => Ok(session.redirect(&format!("/admin/users/{}", user.id), &format!("User {} created.", user.name))),
        Err(e) => {
            let (status, errors) = field_errors(e)?;
            let form = AddUserForm {
                open: !session.htmx,
                csrf: session.csrf.clone(),
                name: form.name,
                email: form.email,
                errors,
            };
            add_user_response(&state, &session, status, form).await
        }
    }
}

/// Bad input and taken values become messages next to their fields; anything else is a page error.
fn field_errors(e: Error) -> Result<(StatusCode, FieldErrors), PageError> {
    let (status, field, message) = match e {
        Error::InvalidInput { field, message } => (StatusCode::BAD_REQUEST, field, message),
        Error::Taken { field, message } => (StatusCode::CONFLICT, field, message),
        other => return Err(other.into()),
    };
    let mut errors = FieldErrors::default();
    match field.as_str() {
        "name" => errors.name = Some(message),
        "email" => errors.email = Some(message),
        "password" => errors.password = Some(message),
        _ => errors.general = Some(message),
    }
    Ok((status, errors))
}

pub struct RemoveDialog {
    open: bool,
    id: String,
    name: String,
    email: String,
    csrf: String,
}

#[derive(Template)]
#[template(path = "user.html")]
pub(super) struct UserPage {
    layout: Layout,
    user: User,
    created: String,
    is_admin: bool,
    csrf: String,
    email_value: String,
    email_error: Option<String>,
    password_error: Option<String>,
    admin_error: Option<String>,
    remove_dialog: Option<RemoveDialog>,
    /// The user's workspaces: (namespace:name, status).
    workspaces: Vec<(String, &'static str)>,
    limits: Vec<LimitRow>,
    pub(super) limits_error: Option<String>,
}

#[derive(Template)]
#[template(path = "remove_user.html")]
struct RemoveFragment {
    remove: RemoveDialog,
}

pub(super) async fn user_page(state: &AppState, session: &Session, id: &str) -> Result<UserPage, PageError> {
    require_admin(session)?;
    let user = state.drydock.users.get(id).await?;
    let actions = state.drydock.permissions.system_actions_of(&session.caller, id).await?;
    let workspaces = state
        .drydock
        .workspaces
        .owned_by(&session.caller, id)
        .await?
        .into_iter()
        .map(|w| (format!("{}:{}", w.namespace, w.config.name), w.status.as_str()))
        .collect();
    Ok(UserPage {
        layout: session.layout("admin"),
        created: when(user.created),
        is_admin: actions.iter().any(|a| a == MANAGE_SYSTEM),
        csrf: session.csrf.clone(),
        email_value: user.email.clone(),
        email_error: None,
        password_error: None,
        admin_error: None,
        remove_dialog: None,
        workspaces,
        // Limits are manageSystem's: a manageUsers holder sees the rest of the page.
        limits: match limit_rows(state, &session.caller, id).await {
            Ok(rows) => rows,
            Err(Error::Forbidden(_)) => Vec::new(),
            Err(e) => return Err(e.into()),
        },
        limits_error: None,
        user,
    })
}

pub async fn details(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let page = user_page(&state, &session, &id).await?;
    Ok(session.page(StatusCode::OK, &page))
}

#[derive(Deserialize)]
pub struct EmailForm {
    #[serde(default)]
    email: String,
}

pub async fn email(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<EmailForm>,
) -> Result<Response, PageError> {
    let Posted { session, form } = posted;
    match state.drydock.users.set_email(&session.caller, &id, &form.email).await {
        Ok(user) => Ok(session.redirect(&format!("/admin/users/{id}"), &format!("E-mail of {} changed.", user.name))),
        Err(e) => {
            let (status, errors) = field_errors(e)?;
            let mut page = user_page(&state, &session, &id).await?;
            page.email_value = form.email;
            page.email_error = errors.email.or(errors.general);
            Ok(session.page(status, &page))
        }
    }
}

#[derive(Deserialize)]
pub struct PasswordForm {
    #[serde(default)]
    password: String,
}

pub async fn password(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<PasswordForm>,
) -> Result<Response, PageError> {
    let Posted { session, form } = posted;
    if session.caller.user.id == id {
        let mut page = user_page(&state, &session, &id).await?;
        page.password_error = Some("Change your own password on the Account page.".into());
        return Ok(session.page(StatusCode::BAD_REQUEST, &page));
    }
    match state.drydock.users.set_password(&session.caller, &id, &form.password, None).await {
        Ok(()) => {
            Ok(session.redirect(&format!("/admin/users/{id}"), "Password reset. The user's sessions were ended."))
        }
        Err(e) => {
            let (status, errors) = field_errors(e)?;
            let mut page = user_page(&state, &session, &id).await?;
            page.password_error = errors.password.or(errors.general);
            Ok(session.page(status, &page))
        }
    }
}

#[derive(Deserialize)]
pub struct AdminForm {
    #[serde(default)]
    grant: bool,
}

pub async fn set_admin(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<AdminForm>,
) -> Result<Response, PageError> {
    let Posted { session, form } = posted;
    let permissions = &state.drydock.permissions;
    let result = if form.grant {
        let grant = Permission {
            user_id: id.clone(),
            domain_id: DOMAIN_SYSTEM.into(),
            instance_id: None,
            actions: vec![MANAGE_SYSTEM.into(), MANAGE_USERS.into()],
        };
        permissions.store(&session.caller, grant).await.map(|_| "Administrator rights granted.")
    } else {
        permissions.remove_system(&session.caller, &id).await.map(|()| "Administrator rights revoked.")
    };
    match result {
        Ok(message) => Ok(session.redirect(&format!("/admin/users/{id}"), message)),
        Err(e @ (Error::Conflict(_) | Error::Forbidden(_))) => {
            let status = if matches!(e, Error::Conflict(_)) { StatusCode::CONFLICT } else { StatusCode::FORBIDDEN };
            let mut page = user_page(&state, &session, &id).await?;
            page.admin_error = Some(e.to_string());
            Ok(session.page(status, &page))
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn confirm_remove(
    State(state): State<AppState>,
    session: Session,
    Path(id): Path<String>,
) -> Result<Response, PageError> {
    let mut page = user_page(&state, &session, &id).await?;
    let remove = RemoveDialog {
        open: !session.htmx,
        id: page.user.id.clone(),
        name: page.user.name.clone(),
        email: page.user.email.clone(),
        csrf: session.csrf.clone(),
    };
    if session.htmx {
        return Ok(html(StatusCode::OK, &RemoveFragment { remove }));
    }
    page.remove_dialog = Some(remove);
    Ok(session.page(StatusCode::OK, &page))
}

pub async fn remove(
    State(state): State<AppState>,
    Path(id): Path<String>,
    posted: Posted<NoFields>,
) -> Result<Response, PageError> {
    let session = posted.session;
    require_admin(&session)?;
    let user = state.drydock.users.get(&id).await?;
    state.drydock.users.remove(&session.caller, &id).await?;
    Ok(session.redirect("/admin/users", &format!("User {} <{}> removed.", user.name, user.email)))
}
