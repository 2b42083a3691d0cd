use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use drydock_core::User;
use drydock_core::model::UserFilter;
use drydock_core::users::CreateUser;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::{PageQuery, page, paged};
use crate::AppState;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::extract::{ApiJson, ApiQuery, Caller};

/// The signed-in user.
#[utoipa::path(get, path = "/api/user", tag = "users", responses((status = 200, body = User), (status = 401, body = ErrorBody)))]
pub async fn me(caller: Caller) -> Json<User> {
    Json(caller.user.clone())
}

/// A user by id.
#[utoipa::path(get, path = "/api/user/{id}", tag = "users", params(("id" = String, Path)),
    responses((status = 200, body = User), (status = 404, body = ErrorBody)))]
pub async fn get(State(state): State<AppState>, _caller: Caller, Path(id): Path<String>) -> ApiResult<Json<User>> {
    Ok(Json(state.drydock.users.get(&id).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FindQuery {
    /// The exact user name.
    name: Option<String>,
    /// The exact e-mail.
    email: Option<String>,
}

/// A user by exact name or e-mail.
#[utoipa::path(get, path = "/api/user/find", tag = "users", params(FindQuery),
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn find(
    State(state): State<AppState>,
    _caller: Caller,
    ApiQuery(q): ApiQuery<FindQuery>,
) -> ApiResult<Json<User>> {
    let users = &state.drydock.users;
    let user = match (q.name, q.email) {
        (Some(name), None) => users.find_by_name(&name).await?,
        (None, Some(email)) => users.find_by_email(&email).await?,
        _ => return Err(ApiError::bad_request(Some("name"), "give exactly one of the query parameters name or email")),
    };
    Ok(Json(user))
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewUserBody {
    name: String,
    email: String,
    password: String,
}

/// Create a user (needs `manageUsers`).
#[utoipa::path(post, path = "/api/user", tag = "users", request_body = NewUserBody,
    responses((status = 201, body = User), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, description = "The name or the e-mail is taken", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(body): ApiJson<NewUserBody>,
) -> ApiResult<Response> {
    let input = CreateUser { name: body.name, email: body.email, password: body.password };
    let user = state.drydock.users.create(&caller, input).await?;
    let location = HeaderValue::from_str(&format!("/api/user/{}", user.id)).map_err(ApiError::internal)?;
    Ok((StatusCode::CREATED, [(header::LOCATION, location)], Json(user)).into_response())
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserChangeBody {
    email: String,
}

/// Change a user's e-mail (needs `manageUsers`).
#[utoipa::path(patch, path = "/api/user/{id}", tag = "users", params(("id" = String, Path)), request_body = UserChangeBody,
    responses((status = 200, body = User), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "The e-mail is taken", body = ErrorBody)))]
pub async fn change(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UserChangeBody>,
) -> ApiResult<Json<User>> {
    Ok(Json(state.drydock.users.set_email(&caller, &id, &body.email).await?))
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct RemoveQuery {
    /// `delete`: also stop and delete the workspaces the user owns.
    workspaces: Option<String>,
}

/// Remove a user with their sessions and tokens (needs `manageUsers`). A user who owns
/// workspaces is refused (409, naming them) unless `workspaces=delete`, which stops and
/// deletes them and answers 200 with their names.
#[utoipa::path(delete, path = "/api/user/{id}", tag = "users", params(("id" = String, Path), RemoveQuery),
    responses((status = 204), (status = 200, description = "Removed with these workspaces", body = Object),
              (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "The last manageSystem holder, or an owner of workspaces", body = ErrorBody)))]
pub async fn remove(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<RemoveQuery>,
) -> ApiResult<Response> {
    let deleted = match q.workspaces.as_deref() {
        None => None,
        Some("delete") => {
            state.drydock.users.get(&id).await?;
            Some(state.drydock.workspaces.delete_all_owned_by(&caller, &id).await?)
        }
        Some(other) => {
            return Err(ApiError::bad_request(
                Some("workspaces"),
                format!("workspaces must be 'delete', not '{other}'"),
            ));
        }
    };
    state.drydock.users.remove(&caller, &id).await?;
    Ok(match deleted {
        Some(names) => Json(serde_json::json!({ "deletedWorkspaces": names })).into_response(),
        None => StatusCode::NO_CONTENT.into_response(),
    })
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct PasswordBody {
    password: String,
    /// Required when users change their own password.
    current_password: Option<String>,
}

/// Set a user's password: the user themselves (with `currentPassword`), or a `manageUsers`
/// holder. The user's other sessions end.
#[utoipa::path(put, path = "/api/user/{id}/password", tag = "users", params(("id" = String, Path)), request_body = PasswordBody,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_password(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<PasswordBody>,
) -> ApiResult<StatusCode> {
    state.drydock.users.set_password(&caller, &id, &body.password, body.current_password.as_deref()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// All users, a page at a time (needs `manageUsers`). The total is in `X-Total-Count`.
#[utoipa::path(get, path = "/api/admin/user", tag = "users", params(PageQuery),
    responses((status = 200, body = Vec<User>), (status = 403, body = ErrorBody)))]
pub async fn admin_list(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> ApiResult<Response> {
    let (users, total) =
        state.drydock.users.list(&caller, &UserFilter::default(), page(q.max_items, q.skip_count)?).await?;
    Ok(paged(users, total))
}

#[derive(Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AdminFindQuery {
    /// Part of the name, any case.
    name_part: Option<String>,
    /// Part of the e-mail, any case.
    email_part: Option<String>,
    max_items: Option<u32>,
    skip_count: Option<u64>,
}

/// Users whose name or e-mail contains a part (needs `manageUsers`).
#[utoipa::path(get, path = "/api/admin/user/find", tag = "users", params(AdminFindQuery),
    responses((status = 200, body = Vec<User>), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn admin_find(
    State(state): State<AppState>,
    caller: Caller,
    ApiQuery(q): ApiQuery<AdminFindQuery>,
) -> ApiResult<Response> {
    if q.name_part.is_none() && q.email_part.is_none() {
        return Err(ApiError::bad_request(Some("namePart"), "give namePart or emailPart"));
    }
    let filter = UserFilter { name_part: q.name_part, email_part: q.email_part, text: None };
    let (users, total) = state.drydock.users.list(&caller, &filter, page(q.max_items, q.skip_count)?).await?;
    Ok(paged(users, total))
}
