//! The route table: every API route once, in the group of the role it
//! needs. The router and the OpenAPI document served at
//! `/api/openapi.json` are both built from it (utoipa-axum), so they cannot
//! disagree; `tests/auth.rs` takes its route list from the served document.
//!
//! Each operation carries who may call it: `x-role` (`public`, `viewer`,
//! `operator`, `admin`, or `dossier_push` for the one route only a dossier
//! push token may call), `x-public-read` (true where `auth.public_read`
//! opens it to callers without a token) and, for the protected ones, a
//! `bearer` security requirement naming the role (OpenAPI 3.1 allows role
//! names there). `/api/ws` is marked `viewer` but checks the token itself
//! (it may come in the first frame), so a plain GET there is a 426.

use std::sync::OnceLock;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::{middleware, Router};
use utoipa::openapi::extensions::ExtensionsBuilder;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme};
use utoipa::openapi::{InfoBuilder, OpenApi, OpenApiBuilder};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{
    account, admin, alerts, broadcasts, dvcqg, guard, history, reports, warnings, ws, ApiState,
};
use crate::auth::Role;

/// The document, serialized once (it depends only on the code).
static DOCUMENT: OnceLock<String> = OnceLock::new();

/// The API routes (guards applied) and their OpenAPI document.
pub(super) fn table(state: &ApiState) -> (Router<ApiState>, OpenApi) {
    let public = OpenApiRouter::new()
        .routes(routes!(super::healthz))
        .routes(routes!(super::readyz))
        .routes(routes!(openapi_json))
        .routes(routes!(account::login));
    // The WebSocket authenticates itself (token in the URL, the header or
    // an `auth` frame; PROTOCOL.md §7), so no guard layer: documented with
    // the role its stream needs.
    let live = mark(OpenApiRouter::new().routes(routes!(ws::ws)), "viewer", true);
    let read = OpenApiRouter::new()
        .routes(routes!(super::metrics))
        .routes(routes!(super::commune))
        .routes(routes!(super::villages))
        .routes(routes!(super::indicators))
        .routes(routes!(history::history))
        .routes(routes!(super::devices))
        .routes(routes!(super::dead_letters))
        .routes(routes!(alerts::list))
        .routes(routes!(alerts::silences))
        .routes(routes!(broadcasts::list))
        .routes(routes!(reports::list))
        .routes(routes!(reports::get))
        .routes(routes!(reports::corrections))
        .routes(routes!(warnings::list))
        .routes(routes!(warnings::get));
    let signed_in = OpenApiRouter::new()
        .routes(routes!(account::me))
        .routes(routes!(account::logout));
    let operator = OpenApiRouter::new()
        .routes(routes!(super::ack_dead_letter))
        .routes(routes!(alerts::ack))
        .routes(routes!(alerts::resolve))
        .routes(routes!(alerts::silence_create))
        .routes(routes!(alerts::silence_delete))
        .routes(routes!(broadcasts::create))
        .routes(routes!(broadcasts::approve))
        .routes(routes!(broadcasts::cancel))
        .routes(routes!(broadcasts::task_done))
        .routes(routes!(reports::seal_period))
        .routes(routes!(reports::approve))
        .routes(routes!(reports::dismiss))
        .routes(routes!(warnings::post));
    // Only a dossier push token (docs/ACCESS.md), whatever a session's role.
    let push = OpenApiRouter::new().routes(routes!(dvcqg::push));
    let admin = OpenApiRouter::new()
        .routes(routes!(account::kiosk_list, account::kiosk_create))
        .routes(routes!(account::kiosk_revoke))
        .routes(routes!(account::push_list, account::push_create))
        .routes(routes!(account::push_revoke))
        .routes(routes!(admin::users, admin::user_create))
        .routes(routes!(admin::user_password))
        .routes(routes!(admin::user_disable))
        .routes(routes!(admin::audit));
    // The report's way out: exports and submission (api/report_out.rs).
    let read = read
        .routes(routes!(super::report_out::export))
        .routes(routes!(super::report_out::submission));
    let operator = operator.routes(routes!(super::report_out::submit));

    let base = OpenApiRouter::with_openapi(
        OpenApiBuilder::new()
            .info(
                InfoBuilder::new()
                    .title("commune-ioc")
                    .version(env!("CARGO_PKG_VERSION"))
                    .description(Some(
                        "HTTP API of a Vietnamese commune's Intelligent Operations Center. \
                         Errors are JSON `{\"error\": {\"code\", \"message\"}}` with Vietnamese \
                         messages (docs/PROTOCOL.md §6); access is described in docs/ACCESS.md.",
                    ))
                    .build(),
            )
            .build(),
    );
    let (router, mut doc) = base
        .merge(open(public))
        .merge(live)
        .merge(guarded(state, read, Role::Viewer, true))
        .merge(guarded(state, signed_in, Role::Viewer, false))
        .merge(guarded(state, operator, Role::Operator, false))
        .merge(guarded(state, admin, Role::Admin, false))
        .merge(pushed(state, push))
        .split_for_parts();
    doc.components
        .get_or_insert_with(Default::default)
        .add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A session token from POST /api/auth/login, a kiosk token, or (for \
                         POST /api/procedure/dvcqg only) a dossier push token",
                    ))
                    .build(),
            ),
        );
    DOCUMENT.get_or_init(|| doc.to_json().unwrap_or_default());
    (router, doc)
}

/// Mark every operation of a group with who may call it.
fn mark(
    mut group: OpenApiRouter<ApiState>,
    role: &str,
    public_read: bool,
) -> OpenApiRouter<ApiState> {
    for item in group.get_openapi_mut().paths.paths.values_mut() {
        for op in [
            &mut item.get,
            &mut item.post,
            &mut item.put,
            &mut item.patch,
            &mut item.delete,
        ]
        .into_iter()
        .flatten()
        {
            let ext = ExtensionsBuilder::new()
                .add("x-role", role)
                .add("x-public-read", public_read)
                .build();
            op.extensions
                .get_or_insert_with(Default::default)
                .merge(ext);
            if role != "public" {
                op.security = Some(vec![SecurityRequirement::new("bearer", [role])]);
            }
        }
    }
    group
}

fn open(group: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    mark(group, "public", true)
}

fn guarded(
    state: &ApiState,
    group: OpenApiRouter<ApiState>,
    role: Role,
    public_read: bool,
) -> OpenApiRouter<ApiState> {
    mark(group, role.as_str(), public_read).route_layer(middleware::from_fn_with_state(
        (
            state.clone(),
            guard::Need {
                role,
                public_read,
                push: false,
            },
        ),
        guard::guard,
    ))
}

/// The dossier push route: `x-role` = `dossier_push`, a right no user role
/// has; only a push token passes its guard.
fn pushed(state: &ApiState, group: OpenApiRouter<ApiState>) -> OpenApiRouter<ApiState> {
    mark(group, PUSH_ROLE, false).route_layer(middleware::from_fn_with_state(
        (
            state.clone(),
            guard::Need {
                role: Role::Viewer,
                public_read: false,
                push: true,
            },
        ),
        guard::guard,
    ))
}

/// The `x-role` of the dossier push route.
pub(crate) const PUSH_ROLE: &str = "dossier_push";

/// The OpenAPI 3.1 document of this API (public, like `/healthz`: it
/// describes the routes, not the data).
#[utoipa::path(get, path = "/api/openapi.json", tag = "probes",
    responses((status = 200, description = "The OpenAPI document", content_type = "application/json")))]
pub(super) async fn openapi_json() -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        DOCUMENT.get().cloned().unwrap_or_default(),
    )
        .into_response()
}
