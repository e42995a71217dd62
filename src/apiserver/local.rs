//! The in-process client: a `kube::Client` whose transport calls [`Api::handle`] directly, with
//! no socket and no TLS, for the components that run inside `rk3s server` (DESIGN §2).
//!
//! The identity is an argument of the transport, not something read from the request: the
//! HTTPS listener (`serve`) only ever passes the identity of the verified client certificate, so
//! no external request can claim an in-process component's user.

use std::convert::Infallible;
use std::sync::Arc;

use axum::body::Body;

use super::{Api, User};

/// The user the controller-manager acts as (upstream's kube-controller-manager identity; the
/// group makes it pass the authorizer until RBAC exists).
pub fn controller_manager() -> User {
    User {
        name: "system:kube-controller-manager".into(),
        groups: vec!["system:masters".into()],
    }
}

/// The user the scheduler acts as (upstream's kube-scheduler identity).
pub fn scheduler() -> User {
    User {
        name: "system:kube-scheduler".into(),
        groups: vec!["system:masters".into()],
    }
}

/// The user a node's kubelet acts as (upstream's node identity).
pub fn node(name: &str) -> User {
    User {
        name: format!("system:node:{name}"),
        groups: vec!["system:nodes".into(), "system:masters".into()],
    }
}

/// A `kube::Client` that serves every request through `api` as `user`.
pub fn client(api: Arc<Api>, user: User) -> kube::Client {
    let service = tower::service_fn(move |req: http::Request<kube::client::Body>| {
        let (api, user) = (api.clone(), user.clone());
        async move {
            let req = req.map(Body::new);
            Ok::<_, Infallible>(api.handle(req, Some(user)).await)
        }
    });
    kube::Client::new(service, "default")
}
